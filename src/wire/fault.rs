//! Reading a JSON value as a wire type, saying where it is at fault: the worker's
//! `invalid_payload` and the MCP tools' refusals name the same path (`tasks[1].name`).

use serde::de::DeserializeOwned;

/// Why a value is not the type asked for: where (`None` for the value as a whole) and what
/// serde said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub path: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "`{path}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// `value` as a `T`, or the path of the first part at fault.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Fault> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut path = e.path().to_string();
        // The path of a missing field is its object's: the field is the one at fault.
        if let Some(named) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            path = if path == "." {
                named.to_owned()
            } else {
                format!("{path}.{named}")
            };
        }
        let path = path.trim_start_matches('.');
        Fault {
            path: (!path.is_empty()).then(|| path.to_owned()),
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only to be refused
    struct Rule {
        series: Vec<uuid::Uuid>,
        name: String,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        rules: Vec<Rule>,
    }

    fn fault(value: serde_json::Value) -> Fault {
        from_value::<Doc>(value).expect_err("at fault")
    }

    #[test]
    fn the_part_at_fault_is_named_by_its_path() {
        let wrong = fault(json!({ "rules": [{ "series": ["abc"], "name": "x" }] }));
        assert_eq!(wrong.path.as_deref(), Some("rules[0].series[0]"));
        let missing = fault(json!({ "rules": [{ "series": [] }] }));
        assert_eq!(missing.path.as_deref(), Some("rules[0].name"));
        assert_eq!(fault(json!({})).path.as_deref(), Some("rules"));
        let null = fault(json!({ "rules": [{ "series": [], "name": null }] }));
        assert_eq!(null.path.as_deref(), Some("rules[0].name"));
        assert_eq!(fault(json!("text")).path, None);
        assert!(
            wrong.to_string().starts_with("`rules[0].series[0]`: "),
            "{wrong}"
        );
    }
}
