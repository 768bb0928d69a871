//! The parts of docs/reference.md that are made from the code's tables: the commands, the event
//! types of each family, and the run statuses with their moves. Each follows a marker line
//! naming its source and runs to the next blank line; a test writes or compares them like the
//! contract (`SOP_WRITE_CONTRACT=1 cargo test --lib`).

use schemars::JsonSchema;
use serde_json::Value;
use strum::EnumMessage;

use crate::domain::event::EventKind;
use crate::domain::run::{RUN_MOVES, RunStatus};
use crate::wire::command::{CommandName, PayloadVisitor, visit_payloads};

const COMMANDS: &str = "<!-- Made from the table of commands (src/wire/command.rs) by a test. -->";
const EVENTS: &str = "<!-- Made from the table of events (src/domain/event.rs) by a test. -->";
const MOVES: &str = "<!-- Made from RUN_MOVES (src/domain/run/mod.rs) by a test. -->";
const STATUSES: &str = "<!-- Made from RunStatus (src/domain/run/mod.rs) by a test. -->";

/// `doc` with the lines after `marker`, up to the next blank line, replaced by `block`.
fn replaced(doc: &str, marker: &str, block: &[String]) -> String {
    let (head, tail) = doc
        .split_once(&format!("{marker}\n"))
        .unwrap_or_else(|| panic!("docs/reference.md has no line {marker}"));
    let rest = tail.split_once("\n\n").map_or("", |(_, rest)| rest);
    format!("{head}{marker}\n{}\n\n{rest}", block.join("\n"))
}

/// A payload's fields as the table shows them: `task_id, reason, note?, tasks[]`.
fn fields<P: JsonSchema>() -> String {
    let schema = schemars::schema_for!(P).to_value();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return "see the contract".to_owned();
    };
    let shown: Vec<String> = properties
        .iter()
        .map(|(name, property)| {
            let list = property["type"] == "array"
                || property["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&"array".into()));
            let optional = !required.contains(&name.as_str());
            let choices = choices(&schema, property)
                .map(|c| format!(": {}", c.join("\\|")))
                .unwrap_or_default();
            format!(
                "{name}{}{}{choices}",
                if list { "[]" } else { "" },
                if optional { "?" } else { "" }
            )
        })
        .collect();
    format!("`{}`", shown.join(", "))
}

/// The values a property may take, when it is an enumeration (itself or through a reference).
fn choices(root: &Value, property: &Value) -> Option<Vec<String>> {
    let target = match property["$ref"].as_str() {
        Some(path) => root.pointer(path.trim_start_matches('#'))?,
        None => property,
    };
    let values = target["enum"].as_array()?;
    Some(
        values
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
    )
}

struct CommandRows(Vec<String>);

impl PayloadVisitor for CommandRows {
    fn visit<P: JsonSchema + serde::de::DeserializeOwned>(&mut self, name: CommandName) {
        self.0.push(format!(
            "| `{}` | {} | {} | {} |",
            name.as_str(),
            name.sender_text(),
            fields::<P>(),
            name.summary()
        ));
    }
}

fn commands() -> Vec<String> {
    let mut rows = CommandRows(vec![
        "| subject | who | payload | effect |".into(),
        "|---|---|---|---|".into(),
    ]);
    visit_payloads(&mut rows);
    rows.0
}

/// One line per family, `procedure: drafted, revised, …`, each type with whom it is for.
fn events() -> Vec<String> {
    let mut families: Vec<(&str, Vec<String>)> = Vec::new();
    for kind in EventKind::ALL {
        let (family, what) = kind.as_str().split_once('.').expect("family.what");
        let shown = format!(
            "`{what}` ({})",
            crate::domain::system::Party::list(kind.audience(), ", ")
        );
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, types)) => types.push(shown),
            None => families.push((family, vec![shown])),
        }
    }
    families
        .into_iter()
        .map(|(family, types)| format!("- **{family}**: {}", types.join(", ")))
        .collect()
}

fn moves() -> Vec<String> {
    let mut block = vec!["```mermaid".to_owned(), "stateDiagram-v2".to_owned()];
    for (from, to, by) in RUN_MOVES {
        let from = from.map_or("[*]", |s| s.as_str());
        block.push(format!("  {from} --> {}: {by}", to.as_str()));
    }
    for status in RunStatus::ALL.iter().filter(|s| !s.is_open()) {
        block.push(format!("  {} --> [*]", status.as_str()));
    }
    block.push("```".to_owned());
    block
}

fn statuses() -> Vec<String> {
    RunStatus::ALL
        .iter()
        .map(|s| {
            let meaning = s
                .get_documentation()
                .expect("every run status is documented");
            let words: Vec<&str> = meaning.split_whitespace().collect();
            format!("- `{}`: {}", s.as_str(), words.join(" "))
        })
        .collect()
}

#[test]
fn the_reference_shows_the_tables_of_the_code() {
    let held = include_str!("../../docs/reference.md");
    let mut made = replaced(held, COMMANDS, &commands());
    made = replaced(&made, EVENTS, &events());
    made = replaced(&made, MOVES, &moves());
    made = replaced(&made, STATUSES, &statuses());
    crate::bus::golden::generated_file("docs/reference.md", &made);
}
