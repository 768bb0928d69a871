//! Output for people: tables, key/value blocks, outcome lines, systems' names and dependency
//! graphs (Mermaid, DOT). Scripts get the same typed values as JSON instead (`--json`).

use std::collections::HashMap;
use std::fmt::Display;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::template::TaskTemplate;
use crate::wire::answer::{Member, TeamIdentity};
use crate::wire::outcome::{Outcome, Verdict};

/// `-` for nothing.
pub fn opt(value: &Option<impl Display>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".into(), ToString::to_string)
}

/// Items joined by commas.
pub fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A time to the second, as RFC 3339.
pub fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn opt_time(at: &Option<DateTime<Utc>>) -> String {
    at.as_ref().map_or_else(|| "-".into(), time)
}

/// How to show an item in a column.
type Cell<'a, T> = Box<dyn Fn(&T) -> String + 'a>;

/// A table's columns, each a header and how to show an item in it, declared once.
pub struct Columns<'a, T> {
    columns: Vec<(&'static str, Cell<'a, T>)>,
    /// Said instead of a table without rows.
    none: Option<&'static str>,
}

impl<'a, T> Columns<'a, T> {
    pub fn new() -> Self {
        Columns {
            columns: Vec::new(),
            none: None,
        }
    }

    /// What to say when there is nothing to list (else the headers alone).
    pub fn or(mut self, none: &'static str) -> Self {
        self.none = Some(none);
        self
    }

    pub fn col(mut self, header: &'static str, cell: impl Fn(&T) -> String + 'a) -> Self {
        self.columns.push((header, Box::new(cell)));
        self
    }

    /// Aligned columns under upper-case headers, no borders: easy to read and to `grep`.
    pub fn render<'i>(&self, items: impl IntoIterator<Item = &'i T>) -> String
    where
        T: 'i,
    {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_header(self.columns.iter().map(|(h, _)| h.to_uppercase()));
        for item in items {
            table.add_row(self.columns.iter().map(|(_, cell)| cell(item)));
        }
        if let (0, Some(none)) = (table.row_count(), self.none) {
            return none.to_owned();
        }
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        table
            .lines()
            .map(|l| l.trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Key/value lines, keys aligned; `-` values are left out.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let shown: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| v != "-").collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    shown
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An outcome as one line (accepted) or a line with the code and message (rejected).
pub fn outcome(o: &Outcome) -> String {
    match &o.verdict {
        Verdict::Accepted { result } => {
            let fields = serde_json::to_value(result).unwrap_or_default();
            let result = fields
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    serde_json::Value::Array(a) => format!(
                        "{k}={}",
                        list(a.iter().map(|i| i.as_str().unwrap_or_default()))
                    ),
                    v => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!("accepted {}: {result}", o.command)
        }
        Verdict::Rejected { error } => {
            let field = error
                .field
                .as_ref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            format!(
                "rejected {}: {}{field}: {}",
                o.command, error.code, error.message
            )
        }
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

/// The task dependency graph of a procedure version.
pub fn graph(name: &str, version: u32, tasks: &[TaskTemplate], format: GraphFormat) -> String {
    let label = |t: &TaskTemplate| {
        let mut l = format!("{}. {}", t.position, escape(&t.name));
        if let Some(kind) = t.default_assignee_type {
            l.push_str(&format!(" ({})", kind.as_str()));
        }
        l
    };
    let edges = tasks
        .iter()
        .flat_map(|t| t.depends_on.iter().map(move |d| (*d, t.position)));
    let mut out = Vec::new();
    match format {
        GraphFormat::Mermaid => {
            out.push("graph TD".to_owned());
            out.extend(
                tasks
                    .iter()
                    .map(|t| format!("  t{}[\"{}\"]", t.position, label(t))),
            );
            out.extend(edges.map(|(from, to)| format!("  t{from} --> t{to}")));
        }
        GraphFormat::Dot => {
            out.push(format!("digraph \"{} v{version}\" {{", escape(name)));
            out.push("  rankdir=TB; node [shape=box];".to_owned());
            out.extend(
                tasks
                    .iter()
                    .map(|t| format!("  t{} [label=\"{}\"];", t.position, label(t))),
            );
            out.extend(edges.map(|(from, to)| format!("  t{from} -> t{to};")));
            out.push("}".to_owned());
        }
    }
    out.join("\n")
}

/// A team's systems: ids, names, types, skills, whether they sign.
pub fn systems(systems: &[Member]) -> String {
    Columns::new()
        .col("id", |s: &Member| s.id.to_string())
        .col("name", |s| s.name.clone())
        .col("type", |s| s.kind.as_str().to_owned())
        .col("skills", |s| list(&s.skills))
        .col("has_key", |s| s.has_key.to_string())
        .render(systems)
}

/// Systems' names by id, to show people `System1/alpha` where an answer has an id.
#[derive(Debug, Clone, Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    pub fn of_team(team: &TeamIdentity) -> Names {
        Names(
            team.systems
                .iter()
                .map(|s| (s.id.to_string(), s.name.clone()))
                .collect(),
        )
    }

    /// The name of the system `id` names, else the id.
    pub fn of(&self, id: &impl Display) -> String {
        let id = id.to_string();
        self.0.get(&id).cloned().unwrap_or(id)
    }

    pub fn opt(&self, id: &Option<impl Display>) -> String {
        id.as_ref().map_or_else(|| "-".into(), |id| self.of(id))
    }
}

/// `sop audit verify`, for a person.
pub fn verification(v: &crate::bus::audit::Verification) -> String {
    use crate::wire::chain::{Break, Checked};
    let held = |c: &Checked| match (c.first, c.last) {
        (Some(first), Some(last)) => format!("events {first}–{last}"),
        _ => "no events".to_owned(),
    };
    let state = |c: &Checked| match &c.first_break {
        None => "intact".to_owned(),
        Some(Break::Changed { index, at }) => format!("event {index} changed ({at})"),
        Some(Break::Missing { index, at }) => format!("event {index} missing (before {at})"),
        Some(Break::Reordered { index, at }) => format!("event {index} out of its place ({at})"),
        Some(Break::Inserted { index, at }) => format!("an event inserted at {index} ({at})"),
    };
    let mut out = format!(
        "team {}: {} events chained\ndatabase  {}, {}\nstream    {}, {}",
        v.team,
        v.recorded_length,
        held(&v.database),
        state(&v.database),
        held(&v.stream),
        state(&v.stream),
    );
    if v.database.unchained > 0 {
        out.push_str(&format!(
            "\n          {} older events from before events were chained",
            v.database.unchained
        ));
    }
    if v.unpublished > 0 {
        out.push_str(&format!(
            " ({} messages wait to be published)",
            v.unpublished
        ));
    }
    out.push_str(&match v.disagree_at {
        None => "\ncopies    agree".to_owned(),
        Some(index) => format!("\ncopies    disagree from event {index}"),
    });
    let c = &v.checkpoints;
    out.push_str(&match &c.first_contradiction {
        None => format!(
            "\ncheckpoints {} confirmed (signed by {})",
            c.confirmed,
            if c.keys.is_empty() {
                "none".to_owned()
            } else {
                c.keys.join(", ")
            }
        ),
        Some(x) if !x.signature_holds => format!(
            "\ncheckpoints the one of {} at event {}: its signature does not hold",
            x.at, x.length
        ),
        Some(x) => format!(
            "\ncheckpoints the one of {} says event {} is {}, the chain has {}: history was rewritten after it",
            x.at,
            x.length,
            x.head,
            x.chain_has.as_deref().unwrap_or("none")
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::system::SystemKind;
    use crate::wire::outcome::ErrorBody;

    fn tasks() -> Vec<TaskTemplate> {
        let task = |position, name: &str, depends_on: &[u32], kind| TaskTemplate {
            position,
            name: name.into(),
            description: String::new(),
            depends_on: depends_on.iter().copied().collect::<BTreeSet<u32>>(),
            default_assignee_type: kind,
            required_skills: vec![],
        };
        vec![
            task(1, "Collect", &[], None),
            task(2, "Interview \"user\"", &[1], Some(SystemKind::System1)),
        ]
    }

    #[test]
    fn mermaid_lists_nodes_then_edges() {
        let g = graph("P", 2, &tasks(), GraphFormat::Mermaid);
        assert_eq!(
            g,
            "graph TD\n  t1[\"1. Collect\"]\n  t2[\"2. Interview 'user' (system1)\"]\n  t1 --> t2"
        );
    }

    #[test]
    fn dot_is_a_digraph() {
        let g = graph("P", 2, &tasks(), GraphFormat::Dot);
        assert!(g.starts_with("digraph \"P v2\" {"), "{g}");
        assert!(g.contains("  t1 -> t2;"), "{g}");
        assert!(g.ends_with('}'), "{g}");
    }

    #[test]
    fn tables_align_columns_under_their_headers() {
        let rows = [("xxx", 1), ("y", 22)];
        let t = Columns::new()
            .col("a", |r: &(&str, u32)| r.0.to_owned())
            .col("bb", |r| r.1.to_string())
            .render(&rows);
        assert_eq!(t, "A    BB\nxxx  1\ny    22");
    }

    #[test]
    fn an_empty_list_says_so() {
        let none: [u32; 0] = [];
        let columns = || Columns::new().col("n", |n: &u32| n.to_string());
        assert_eq!(columns().or("no numbers").render(&none), "no numbers");
        assert_eq!(columns().render(&none), "N");
    }

    #[test]
    fn fields_leave_out_what_is_not_there() {
        let f = fields(&[("name", "P".into()), ("approved_at", "-".into())]);
        assert_eq!(f, "name  P");
    }

    #[test]
    fn outcomes_read_as_one_line() {
        let o = Outcome {
            schema_version: 1,
            command_id: uuid::Uuid::nil(),
            command: "task.start".into(),
            verdict: Verdict::Rejected {
                error: ErrorBody {
                    code: "invalid_state".into(),
                    message: "not ready".into(),
                    field: None,
                },
            },
            processed_at: Utc::now(),
        };
        assert_eq!(outcome(&o), "rejected task.start: invalid_state: not ready");
    }
}
