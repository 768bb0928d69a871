//! A version's digest: SHA-256 over the canonical form of its governed content, so that an
//! approval names the exact content its approver read, and a run the exact content it
//! executed. The form is specified in docs/reference.md ("Digest of a version") with a test
//! vector; it never changes for a given content (a new form would be `sop-procedure-v2`).

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use super::ProcedureMeta;
use crate::domain::template::Templates;

/// `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn of(meta: &ProcedureMeta, templates: &Templates) -> Digest {
        let hash = Sha256::digest(canonical_form(meta, templates).as_bytes());
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in hash {
            let _ = write!(text, "{byte:02x}");
        }
        Digest(text)
    }

    /// A digest as stored, written by [`Digest::of`].
    pub fn from_stored(text: String) -> Digest {
        Digest(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical form, version 1: UTF-8 lines, each ending in `\n`. First `sop-procedure-v1`;
/// then each text as `key:<length in bytes>:<text>` (so a text may hold any character, line
/// breaks included) and each list as `key#<count>`, followed by its items:
/// name, description, risk_level, impact, rollback_plan, `tasks#<count>`, and for each
/// template in position order: position, name, description, depends_on (positions ascending,
/// comma separated), default_assignee_type (empty when none), `required_skills#<count>` and
/// each skill as `skill:…` in the order given.
pub fn canonical_form(meta: &ProcedureMeta, templates: &Templates) -> String {
    let mut out = String::from("sop-procedure-v1\n");
    text(&mut out, "name", &meta.name);
    text(&mut out, "description", &meta.description);
    text(&mut out, "risk_level", meta.risk_level.as_str());
    text(&mut out, "impact", meta.impact.as_str());
    text(&mut out, "rollback_plan", &meta.rollback_plan);
    count(&mut out, "tasks", templates.len());
    for t in templates.as_slice() {
        text(&mut out, "position", &t.position.to_string());
        text(&mut out, "name", &t.name);
        text(&mut out, "description", &t.description);
        let deps: Vec<String> = t.depends_on.iter().map(u32::to_string).collect();
        text(&mut out, "depends_on", &deps.join(","));
        let assignee = t.default_assignee_type.map_or("", |k| k.as_str());
        text(&mut out, "default_assignee_type", assignee);
        count(&mut out, "required_skills", t.required_skills.len());
        for skill in &t.required_skills {
            text(&mut out, "skill", skill);
        }
    }
    out
}

fn text(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key}:{}:{value}", value.len());
}

fn count(out: &mut String, key: &str, n: usize) {
    let _ = writeln!(out, "{key}#{n}");
}

#[cfg(test)]
mod tests {
    use super::{Digest, canonical_form};
    use crate::domain::procedure::{MetaDraft, ProcedureMeta};
    use crate::domain::template::{TemplateDraft, Templates};

    fn example() -> (ProcedureMeta, Templates) {
        let meta = ProcedureMeta::parse(MetaDraft {
            name: "Onboard a client".into(),
            description: "Two steps.\nThe second waits for the first.".into(),
            risk_level: "medium".into(),
            impact: "high".into(),
            rollback_plan: "Close the account.".into(),
        })
        .unwrap();
        let templates = Templates::parse(vec![
            TemplateDraft {
                position: Some(1),
                name: "Collect documents".into(),
                default_assignee_type: Some("system1".into()),
                required_skills: vec!["kyc".into(), "français".into()],
                ..Default::default()
            },
            TemplateDraft {
                position: Some(2),
                name: "Open the account".into(),
                depends_on: vec![1],
                ..Default::default()
            },
        ])
        .unwrap();
        (meta, templates)
    }

    /// The test vector of docs/reference.md: another implementation must give the same.
    #[test]
    fn the_canonical_form_and_digest_match_the_documented_vector() {
        let (meta, templates) = example();
        assert_eq!(
            canonical_form(&meta, &templates),
            "sop-procedure-v1\n\
             name:16:Onboard a client\n\
             description:42:Two steps.\nThe second waits for the first.\n\
             risk_level:6:medium\n\
             impact:4:high\n\
             rollback_plan:18:Close the account.\n\
             tasks#2\n\
             position:1:1\n\
             name:17:Collect documents\n\
             description:0:\n\
             depends_on:0:\n\
             default_assignee_type:7:system1\n\
             required_skills#2\n\
             skill:3:kyc\n\
             skill:9:français\n\
             position:1:2\n\
             name:16:Open the account\n\
             description:0:\n\
             depends_on:1:1\n\
             default_assignee_type:0:\n\
             required_skills#0\n"
        );
        assert_eq!(
            Digest::of(&meta, &templates).as_str(),
            "sha256:f9a2bf0fd668ebca69a46c1bb9206deefad9452b3d4ea2fdfe1c156a9b8d335a"
        );
    }

    #[test]
    fn any_governed_change_changes_the_digest() {
        let (meta, templates) = example();
        let base = Digest::of(&meta, &templates);
        let mut renamed = meta.clone();
        renamed.name.push('!');
        assert_ne!(Digest::of(&renamed, &templates), base);
        let mut moved = meta.clone();
        // The same characters split differently between two fields must not collide.
        moved.description = format!("{}{}", moved.description, "x");
        moved.name.pop();
        assert_ne!(Digest::of(&moved, &templates), base);
        assert_eq!(Digest::of(&meta.clone(), &templates.clone()), base);
    }
}
