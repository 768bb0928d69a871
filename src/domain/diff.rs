//! What changed between two versions of a procedure: metadata fields, and templates matched by
//! position (added, removed, changed — dependency changes included).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::procedure::ProcedureMeta;
use super::template::{TaskTemplate, Templates};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldChange {
    pub field: Cow<'static, str>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateChange {
    pub position: u32,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Diff {
    pub fields: Vec<FieldChange>,
    pub tasks_added: Vec<TaskTemplate>,
    pub tasks_removed: Vec<TaskTemplate>,
    pub tasks_changed: Vec<TemplateChange>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
            && self.tasks_added.is_empty()
            && self.tasks_removed.is_empty()
            && self.tasks_changed.is_empty()
    }
}

fn change(out: &mut Vec<FieldChange>, field: &'static str, from: String, to: String) {
    if from != to {
        out.push(FieldChange {
            field: field.into(),
            from,
            to,
        });
    }
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let parts: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

fn template_changes(a: &TaskTemplate, b: &TaskTemplate) -> Vec<FieldChange> {
    let mut out = Vec::new();
    change(&mut out, "name", a.name.clone(), b.name.clone());
    change(
        &mut out,
        "description",
        a.description.clone(),
        b.description.clone(),
    );
    change(
        &mut out,
        "depends_on",
        list(&a.depends_on),
        list(&b.depends_on),
    );
    let kind = |t: &TaskTemplate| {
        t.default_assignee_type
            .map(|k| k.to_string())
            .unwrap_or_default()
    };
    change(&mut out, "default_assignee_type", kind(a), kind(b));
    change(
        &mut out,
        "required_skills",
        list(&a.required_skills),
        list(&b.required_skills),
    );
    out
}

pub fn diff(from: (&ProcedureMeta, &Templates), to: (&ProcedureMeta, &Templates)) -> Diff {
    let (a, b) = (from.0, to.0);
    let mut fields = Vec::new();
    change(&mut fields, "name", a.name.clone(), b.name.clone());
    change(
        &mut fields,
        "description",
        a.description.clone(),
        b.description.clone(),
    );
    change(
        &mut fields,
        "risk_level",
        a.risk_level.as_str().into(),
        b.risk_level.as_str().into(),
    );
    change(
        &mut fields,
        "impact",
        a.impact.as_str().into(),
        b.impact.as_str().into(),
    );
    change(
        &mut fields,
        "rollback_plan",
        a.rollback_plan.clone(),
        b.rollback_plan.clone(),
    );
    let find = |ts: &Templates, p: u32| ts.as_slice().iter().find(|t| t.position == p).cloned();
    let mut diff = Diff {
        fields,
        tasks_added: Vec::new(),
        tasks_removed: Vec::new(),
        tasks_changed: Vec::new(),
    };
    for old in from.1.as_slice() {
        match find(to.1, old.position) {
            None => diff.tasks_removed.push(old.clone()),
            Some(new) => {
                let changes = template_changes(old, &new);
                if !changes.is_empty() {
                    diff.tasks_changed.push(TemplateChange {
                        position: old.position,
                        changes,
                    });
                }
            }
        }
    }
    for new in to.1.as_slice() {
        if find(from.1, new.position).is_none() {
            diff.tasks_added.push(new.clone());
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::TemplateDraft;
    use crate::domain::testing::{first_run_discovery, meta};

    #[test]
    fn identical_versions_have_an_empty_diff() {
        let t = first_run_discovery();
        assert!(diff((&meta(), &t), (&meta(), &t)).is_empty());
    }

    #[test]
    fn changed_fields_and_templates_are_listed() {
        let old = first_run_discovery();
        let mut m = meta();
        m.description = "Sharper".into();
        let new = Templates::parse(vec![
            TemplateDraft {
                position: Some(1),
                name: "Collect user identity and links".into(),
                ..Default::default()
            },
            TemplateDraft {
                position: Some(2),
                name: "Interview".into(),
                depends_on: vec![],
                ..Default::default()
            },
            TemplateDraft {
                position: Some(9),
                name: "Follow up".into(),
                depends_on: vec![2],
                ..Default::default()
            },
        ])
        .unwrap();
        let d = diff((&meta(), &old), (&m, &new));
        assert_eq!(d.fields.len(), 1);
        assert_eq!(d.fields[0].field, "description");
        assert_eq!(
            d.tasks_added.iter().map(|t| t.position).collect::<Vec<_>>(),
            vec![9]
        );
        assert_eq!(
            d.tasks_removed
                .iter()
                .map(|t| t.position)
                .collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        let second = &d.tasks_changed[0];
        assert_eq!(second.position, 2);
        let fields: Vec<&str> = second.changes.iter().map(|c| c.field.as_ref()).collect();
        assert_eq!(fields, vec!["name", "depends_on"]);
        assert_eq!(second.changes[1].from, "[1]");
        assert_eq!(second.changes[1].to, "[]");
    }
}
