//! Output for people: aligned tables, outcome lines, and dependency graphs (Mermaid, DOT).

use serde_json::Value;

/// Plain text of a JSON value for a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows under headers with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_uppercase()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Rows of `items` (an array of objects) for the given fields.
pub fn rows(items: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| fields.iter().map(|f| cell(&i[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// Key/value lines for the given fields of an object.
pub fn fields(obj: &Value, keys: &[&str]) -> String {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    keys.iter()
        .filter(|k| !obj[**k].is_null())
        .map(|k| format!("{k:<width$}  {}", cell(&obj[*k])))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An outcome as one line (accepted) or a line with the code and message (rejected).
pub fn outcome(o: &Value) -> String {
    let command = cell(&o["command"]);
    if o["status"] == "accepted" {
        let result = o["result"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", cell(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        format!("accepted {command}: {result}")
    } else {
        let e = &o["error"];
        let field = e["field"]
            .as_str()
            .map(|f| format!(" [{f}]"))
            .unwrap_or_default();
        format!(
            "rejected {command}: {}{field}: {}",
            cell(&e["code"]),
            cell(&e["message"])
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

fn escape(s: &str) -> String {
    s.replace('"', "'")
}

/// The task dependency graph of a procedure (`tasks` as in `procedure.get`).
pub fn graph(procedure: &Value, tasks: &Value, format: GraphFormat) -> String {
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    let label = |t: &Value| {
        let mut l = format!("{}. {}", cell(&t["position"]), escape(&cell(&t["name"])));
        if let Some(kind) = t["default_assignee_type"].as_str() {
            l.push_str(&format!(" ({kind})"));
        }
        l
    };
    let mut out = Vec::new();
    match format {
        GraphFormat::Mermaid => {
            out.push("graph TD".to_owned());
            for t in &tasks {
                out.push(format!("  t{}[\"{}\"]", cell(&t["position"]), label(t)));
            }
            for t in &tasks {
                for d in t["depends_on"].as_array().into_iter().flatten() {
                    out.push(format!("  t{} --> t{}", cell(d), cell(&t["position"])));
                }
            }
        }
        GraphFormat::Dot => {
            out.push(format!(
                "digraph \"{} v{}\" {{",
                escape(&cell(&procedure["name"])),
                cell(&procedure["version"])
            ));
            out.push("  rankdir=TB; node [shape=box];".to_owned());
            for t in &tasks {
                out.push(format!(
                    "  t{} [label=\"{}\"];",
                    cell(&t["position"]),
                    label(t)
                ));
            }
            for t in &tasks {
                for d in t["depends_on"].as_array().into_iter().flatten() {
                    out.push(format!("  t{} -> t{};", cell(d), cell(&t["position"])));
                }
            }
            out.push("}".to_owned());
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tasks() -> Value {
        json!([
            { "position": 1, "name": "Collect", "depends_on": [] },
            { "position": 2, "name": "Interview \"user\"", "depends_on": [1], "default_assignee_type": "system1" },
        ])
    }

    #[test]
    fn mermaid_lists_nodes_then_edges() {
        let g = graph(&json!({}), &tasks(), GraphFormat::Mermaid);
        assert_eq!(
            g,
            "graph TD\n  t1[\"1. Collect\"]\n  t2[\"2. Interview 'user' (system1)\"]\n  t1 --> t2"
        );
    }

    #[test]
    fn dot_is_a_digraph() {
        let g = graph(
            &json!({ "name": "P", "version": 2 }),
            &tasks(),
            GraphFormat::Dot,
        );
        assert!(g.starts_with("digraph \"P v2\" {"));
        assert!(g.contains("  t1 -> t2;"));
        assert!(g.ends_with('}'));
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y");
    }

    #[test]
    fn outcomes_read_as_one_line() {
        let o = json!({ "command": "task.start", "status": "rejected",
            "error": { "code": "invalid_state", "message": "not ready", "field": null } });
        assert_eq!(outcome(&o), "rejected task.start: invalid_state: not ready");
    }
}

/// Systems' names by id, to show people `System1/alpha` where the answer has an id.
#[derive(Debug, Clone, Default)]
pub struct Names(std::collections::HashMap<String, String>);

impl Names {
    /// From a `team.get` answer.
    pub fn of_team(team: &Value) -> Names {
        Names(
            team["systems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    Some((s["id"].as_str()?.to_owned(), s["name"].as_str()?.to_owned()))
                })
                .collect(),
        )
    }

    /// The name of the system `id` names, else `id` as it is.
    pub fn name(&self, id: &Value) -> Value {
        id.as_str()
            .and_then(|i| self.0.get(i))
            .map_or_else(|| id.clone(), |n| Value::String(n.clone()))
    }

    /// `value` with the system ids under `keys` replaced by names.
    pub fn in_object(&self, value: &Value, keys: &[&str]) -> Value {
        let mut named = value.clone();
        for key in keys {
            if let Some(id) = value.get(*key) {
                named[*key] = self.name(id);
            }
        }
        named
    }

    /// `items` (an array of objects) with the system ids under `keys` replaced by names.
    pub fn in_rows(&self, items: &Value, keys: &[&str]) -> Value {
        match items.as_array() {
            Some(all) => Value::Array(all.iter().map(|i| self.in_object(i, keys)).collect()),
            None => items.clone(),
        }
    }
}
