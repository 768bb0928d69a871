//! Tool input schemas in the subset of JSON Schema that the major model APIs accept in a
//! function declaration, because hosts hand a tool's schema to the model as it is (AutoGen
//! keeps `properties` and `required` and drops `$defs`): self-contained, one `type` per node,
//! closed sets as `enum`. docs/agents.md lists the subset and the providers' documents.
//!
//! Two dialects: [`Dialect::Portable`] (OpenAI, Anthropic, Gemini alike) leaves optional
//! arguments out of `required`; [`Dialect::OpenAiStrict`] follows OpenAI's strict mode, where
//! every argument is required, an optional one may be `null`, and every object is closed.

use serde_json::{Map, Value, json};

/// The keywords a tool schema may use, on any node.
pub const KEYWORDS: &[&str] = &[
    "type",
    "description",
    "properties",
    "required",
    "enum",
    "items",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "additionalProperties",
];

/// The JSON types a node may name (one per node; `null` only in the strict dialect's pairs).
pub const TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object"];

/// The `format`s kept: those every provider documents; the rest are dropped.
pub const FORMATS: &[&str] = &["date-time", "uuid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Dialect {
    /// Optional arguments are absent from `required`: OpenAI (non-strict), Anthropic, Gemini.
    #[default]
    Portable,
    /// OpenAI's strict mode: every argument required, optional ones nullable
    /// (`["string", "null"]`), every object `additionalProperties: false`.
    OpenaiStrict,
}

/// A generated schema (with `$defs`, `oneOf`, `const`, type pairs) as a tool's input schema.
pub fn tool_schema(generated: &Value, dialect: Dialect) -> Map<String, Value> {
    let mut schema = match simplify(generated, generated) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // The tool's description says what it is for; the type's doc speaks of the code.
    schema.remove("description");
    schema.insert("type".into(), json!("object"));
    schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let mut schema = Value::Object(schema);
    if dialect == Dialect::OpenaiStrict {
        strict(&mut schema);
    }
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `node` with its references inlined and every construct outside [`KEYWORDS`] rewritten.
fn simplify(node: &Value, root: &Value) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    if let Some(Value::String(to)) = map.get("$ref") {
        let target = root
            .pointer(to.trim_start_matches('#'))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut out = Map::new();
        if let Some(d) = map.get("description") {
            out.insert("description".into(), d.clone());
        }
        merge(&mut out, simplify(&target, root));
        return Value::Object(out);
    }
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "type" => {
                let one = match value {
                    Value::Array(types) => types.iter().find(|t| *t != "null").cloned(),
                    other => Some(other.clone()),
                };
                if let Some(t) = one {
                    out.insert("type".into(), t);
                }
            }
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "enum" => {
                let values: Vec<Value> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| !v.is_null())
                    .cloned()
                    .collect();
                out.insert("enum".into(), Value::Array(values));
            }
            "format" if FORMATS.contains(&value.as_str().unwrap_or_default()) => {
                out.insert(key.clone(), value.clone());
            }
            "properties" => {
                let properties = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), simplify(v, root)))
                    .collect();
                out.insert(key.clone(), Value::Object(properties));
            }
            "items" => {
                out.insert(key.clone(), simplify(value, root));
            }
            "additionalProperties" if value == &Value::Bool(false) => {}
            k if KEYWORDS.contains(&k) && k != "additionalProperties" && k != "format" => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    for all in ["allOf"] {
        for branch in map.get(all).and_then(Value::as_array).into_iter().flatten() {
            merge(&mut out, simplify(branch, root));
        }
    }
    let branches: Vec<Value> = ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| map.get(*k).and_then(Value::as_array))
        .flatten()
        .map(|b| simplify(b, root))
        .filter(|b| b.get("type") != Some(&json!("null")) && b != &json!({}))
        .collect();
    match branches.as_slice() {
        [] => {}
        [one] => merge(&mut out, one.clone()),
        many => alternatives(&mut out, many),
    }
    if out
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        out.remove("required");
    }
    if out.get("type") == Some(&json!("string")) && out.get("enum").is_some() {
        out.remove("format");
    }
    Value::Object(out)
}

/// Adds `branch`'s keywords to `out`; `out`'s own (its description) win.
fn merge(out: &mut Map<String, Value>, branch: Value) {
    let Value::Object(branch) = branch else {
        return;
    };
    // A set of values keeps what each value means after the field's own description.
    if let (true, Some(Value::String(own)), Some(Value::String(values))) = (
        branch.contains_key("enum"),
        out.get("description"),
        branch.get("description"),
    ) && !own.contains(values.as_str())
    {
        let both = format!("{own} {values}");
        out.insert("description".into(), json!(both));
    }
    for (k, v) in branch {
        out.entry(k).or_insert(v);
    }
}

/// One node for a choice between `branches`: one `enum` when each is a set of strings (their
/// descriptions listed in the node's), else one object with every branch's properties, each
/// required only when every branch requires it.
fn alternatives(out: &mut Map<String, Value>, branches: &[Value]) {
    let strings = branches
        .iter()
        .all(|b| b.get("enum").is_some() && b.get("type") == Some(&json!("string")));
    let mut notes = Vec::new();
    if strings {
        let mut values = Vec::new();
        for b in branches {
            let these = b["enum"].as_array().cloned().unwrap_or_default();
            if let Some(d) = b.get("description").and_then(Value::as_str) {
                let names: Vec<String> = these.iter().map(|v| format!("`{}`", text(v))).collect();
                notes.push(format!("{}: {}", names.join(", "), d));
            }
            values.extend(these);
        }
        out.insert("type".into(), json!("string"));
        out.insert("enum".into(), Value::Array(values));
    } else {
        let mut properties = Map::new();
        let mut required: Option<Vec<Value>> = None;
        for b in branches {
            for (k, v) in b
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                properties.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let these = b
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            required = Some(match required {
                None => these,
                Some(r) => r.into_iter().filter(|x| these.contains(x)).collect(),
            });
            if let Some(d) = b.get("description").and_then(Value::as_str) {
                notes.push(d.to_owned());
            }
        }
        out.insert("type".into(), json!("object"));
        out.insert("properties".into(), Value::Object(properties));
        if let Some(required) = required.filter(|r| !r.is_empty()) {
            out.insert("required".into(), Value::Array(required));
        }
    }
    if !notes.is_empty() {
        let own = out
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let joined = notes.join("; ");
        let description = if own.is_empty() {
            joined
        } else {
            format!("{own} ({joined})")
        };
        out.insert("description".into(), json!(description));
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// OpenAI's strict mode on a portable schema: each object closed, each property required,
/// the optional ones nullable.
fn strict(node: &mut Value) {
    let Value::Object(map) = node else { return };
    let required: Vec<Value> = map
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut all = None;
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        let mut names = Vec::new();
        for (name, property) in properties.iter_mut() {
            strict(property);
            if !required.contains(&json!(name)) {
                nullable(property);
            }
            names.push(json!(name));
        }
        all = Some(names);
    } else if let Some(items) = map.get_mut("items") {
        strict(items);
    }
    if let Some(all) = all {
        map.insert("required".into(), Value::Array(all));
        map.insert("additionalProperties".into(), json!(false));
    }
}

fn nullable(property: &mut Value) {
    if let Some(t) = property.get("type").cloned() {
        property["type"] = json!([t, "null"]);
    }
    if let Some(Value::Array(values)) = property.get_mut("enum") {
        values.push(Value::Null);
    }
}

/// Where `schema` leaves the subset, one line each (`<pointer>: <what>`), for `dialect`.
pub fn violations(schema: &Value, dialect: Dialect) -> Vec<String> {
    let mut found = Vec::new();
    if schema.get("type") != Some(&json!("object")) {
        found.push("/: the root is not `type: object`".to_owned());
    }
    check(schema, "", dialect, &mut found);
    found
}

fn check(node: &Value, at: &str, dialect: Dialect, found: &mut Vec<String>) {
    let Value::Object(map) = node else {
        found.push(format!("{at}: not an object"));
        return;
    };
    for key in map.keys() {
        if !KEYWORDS.contains(&key.as_str()) {
            found.push(format!("{at}/{key}: not in the subset"));
        }
    }
    let strict = dialect == Dialect::OpenaiStrict;
    match map.get("type") {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(pair))
            if strict
                && pair.len() == 2
                && pair[1] == "null"
                && TYPES.contains(&pair[0].as_str().unwrap_or_default()) => {}
        other => found.push(format!("{at}/type: {other:?} is not one of {TYPES:?}")),
    }
    if let Some(values) = map.get("enum") {
        let ok = values.as_array().is_some_and(|v| {
            !v.is_empty() && v.iter().all(|x| x.is_string() || (strict && x.is_null()))
        });
        if !ok {
            found.push(format!("{at}/enum: not a non-empty list of strings"));
        }
    }
    if let Some(f) = map.get("format")
        && !FORMATS.contains(&f.as_str().unwrap_or_default())
    {
        found.push(format!("{at}/format: {f} is not one of {FORMATS:?}"));
    }
    match map.get("additionalProperties") {
        None if strict && map.contains_key("properties") => {
            found.push(format!(
                "{at}: an object without additionalProperties: false"
            ));
        }
        Some(v) if v != &Value::Bool(false) => {
            found.push(format!("{at}/additionalProperties: only false"));
        }
        _ => {}
    }
    let properties = map.get("properties").and_then(Value::as_object);
    if map.get("type") == Some(&json!("object")) && properties.is_none() {
        found.push(format!("{at}: an object without properties"));
    }
    let required: Vec<&str> = map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for r in &required {
        if !properties.is_some_and(|p| p.contains_key(*r)) {
            found.push(format!("{at}/required: `{r}` is not a property"));
        }
    }
    for (name, property) in properties.into_iter().flatten() {
        if strict && !required.contains(&name.as_str()) {
            found.push(format!("{at}/required: `{name}` is missing (strict mode)"));
        }
        check(property, &format!("{at}/properties/{name}"), dialect, found);
    }
    if let Some(items) = map.get("items") {
        check(items, &format!("{at}/items"), dialect, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_choices_and_constants_become_the_subset() {
        let generated = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Example",
            "type": "object",
            "properties": {
                "outcome": { "$ref": "#/$defs/Outcome", "description": "The verdict." },
                "note": { "type": ["string", "null"], "maxLength": 10 },
                "window": { "anyOf": [{ "$ref": "#/$defs/Window" }, { "type": "null" }] },
                "count": { "type": "integer", "format": "uint32", "minimum": 0 }
            },
            "required": ["outcome"],
            "additionalProperties": false,
            "$defs": {
                "Outcome": { "oneOf": [
                    { "type": "string", "const": "approve", "description": "Accept it." },
                    { "type": "string", "const": "reject", "description": "Send it back." }
                ]},
                "Window": { "type": "object", "title": "Window",
                    "properties": { "from": { "type": "string", "format": "date-time" } },
                    "required": ["from"] }
            }
        });
        let schema = Value::Object(tool_schema(&generated, Dialect::Portable));
        assert_eq!(violations(&schema, Dialect::Portable), Vec::<String>::new());
        assert_eq!(
            schema["properties"]["outcome"]["enum"],
            json!(["approve", "reject"])
        );
        let described = schema["properties"]["outcome"]["description"]
            .as_str()
            .unwrap();
        assert!(
            described.starts_with("The verdict.") && described.contains("`reject`: Send it back.")
        );
        assert_eq!(schema["properties"]["note"]["type"], "string");
        assert_eq!(schema["properties"]["window"]["required"], json!(["from"]));
        assert!(schema["properties"]["count"].get("format").is_none());

        let strict = Value::Object(tool_schema(&generated, Dialect::OpenaiStrict));
        assert_eq!(
            violations(&strict, Dialect::OpenaiStrict),
            Vec::<String>::new()
        );
        assert_eq!(
            strict["required"],
            json!(["outcome", "note", "window", "count"])
        );
        assert_eq!(
            strict["properties"]["note"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(
            strict["properties"]["window"]["additionalProperties"],
            false
        );
        // The portable dialect is refused by strict mode's rules, and the other way round.
        assert!(!violations(&schema, Dialect::OpenaiStrict).is_empty());
        assert!(!violations(&strict, Dialect::Portable).is_empty());
    }
}
