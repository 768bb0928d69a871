//! Task templates: the task structure inside a procedure version.
//!
//! Within a version a template is identified by its `position` (unique, the order people read);
//! dependencies name other positions of the same version. The store gives each template row its
//! own id and stores dependencies as ids, remapping them whenever templates are copied.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::system::SystemKind;
use super::text;

pub const MAX_TEMPLATES: usize = 1000;
/// All the text of a procedure's templates together. Events carry the templates, and an
/// event must fit a NATS message (1 MiB by default) with room to spare.
pub const MAX_TEMPLATES_TEXT: usize = 256 * 1024;
pub const MAX_SKILLS: usize = 32;
pub const MAX_SKILL_LEN: usize = 64;
/// Positions are 1-based and bounded, so they fit every integer column they are stored in.
pub const MAX_POSITION: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskTemplate {
    pub position: u32,
    pub name: String,
    pub description: String,
    /// Positions of templates that must be approved before this one's task is ready.
    pub depends_on: BTreeSet<u32>,
    pub default_assignee_type: Option<SystemKind>,
    pub required_skills: Vec<String>,
}

/// A template as submitted, before validation.
#[derive(Debug, Clone, Default)]
pub struct TemplateDraft {
    /// When absent, the 1-based index in the submitted list.
    pub position: Option<u32>,
    pub name: String,
    pub description: String,
    pub depends_on: Vec<u32>,
    pub default_assignee_type: Option<String>,
    pub required_skills: Vec<String>,
}

/// A validated template set: positions unique, dependencies resolve, no cycles, bounded size.
/// Kept in position order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates(Vec<TaskTemplate>);

impl Templates {
    pub fn parse(raw: Vec<TemplateDraft>) -> Result<Templates, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::invalid(
                "tasks",
                "a procedure needs at least one task",
            ));
        }
        if raw.len() > MAX_TEMPLATES {
            return Err(DomainError::invalid(
                "tasks",
                format!(
                    "at most {MAX_TEMPLATES} tasks per procedure ({} given)",
                    raw.len()
                ),
            ));
        }
        let mut by_position: BTreeMap<u32, TaskTemplate> = BTreeMap::new();
        for (index, t) in raw.into_iter().enumerate() {
            let field = |name: &str| format!("tasks[{index}].{name}");
            let position = t.position.unwrap_or(index as u32 + 1);
            if position == 0 || position > MAX_POSITION {
                return Err(DomainError::invalid(
                    field("position"),
                    format!("must be between 1 and {MAX_POSITION}"),
                ));
            }
            let default_assignee_type = t
                .default_assignee_type
                .as_deref()
                .map(|k| SystemKind::parse(&field("default_assignee_type"), k))
                .transpose()?;
            if t.required_skills.len() > MAX_SKILLS {
                return Err(DomainError::invalid(
                    field("required_skills"),
                    format!("at most {MAX_SKILLS} skills"),
                ));
            }
            let mut required_skills = Vec::new();
            for skill in &t.required_skills {
                let skill = text::required(&field("required_skills"), skill, MAX_SKILL_LEN)?;
                if !required_skills.contains(&skill) {
                    required_skills.push(skill);
                }
            }
            if t.depends_on.contains(&position) {
                return Err(DomainError::invalid(
                    field("depends_on"),
                    format!("task at position {position} cannot depend on itself"),
                ));
            }
            let template = TaskTemplate {
                position,
                name: text::required(&field("name"), &t.name, text::MAX_NAME)?,
                description: text::optional(&field("description"), &t.description, text::MAX_TEXT)?,
                depends_on: t.depends_on.into_iter().collect(),
                default_assignee_type,
                required_skills,
            };
            if by_position.insert(position, template).is_some() {
                return Err(DomainError::invalid(
                    field("position"),
                    format!("position {position} is used by more than one task"),
                ));
            }
        }
        for t in by_position.values() {
            if let Some(missing) = t.depends_on.iter().find(|d| !by_position.contains_key(d)) {
                return Err(DomainError::invalid(
                    format!("tasks[position={}].depends_on", t.position),
                    format!("no task at position {missing} in this procedure"),
                ));
            }
        }
        let templates = Templates(by_position.into_values().collect());
        // Measured as the events carry it, escaped JSON: a control character takes six bytes.
        let text: usize = templates
            .0
            .iter()
            .map(|t| {
                text::json_len(&t.name)
                    + text::json_len(&t.description)
                    + t.required_skills
                        .iter()
                        .map(|s| text::json_len(s))
                        .sum::<usize>()
            })
            .sum();
        if text > MAX_TEMPLATES_TEXT {
            return Err(DomainError::invalid(
                "tasks",
                format!(
                    "the tasks' text is {text} bytes as JSON; at most {MAX_TEMPLATES_TEXT} per procedure"
                ),
            ));
        }
        templates.check_acyclic()?;
        Ok(templates)
    }

    /// Kahn's algorithm; what is left when no template is free forms (or waits on) a cycle.
    fn check_acyclic(&self) -> Result<(), DomainError> {
        let mut waiting: BTreeMap<u32, usize> = self
            .0
            .iter()
            .map(|t| (t.position, t.depends_on.len()))
            .collect();
        let mut free: Vec<u32> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(p, _)| *p)
            .collect();
        let mut dependents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for t in &self.0 {
            for d in &t.depends_on {
                dependents.entry(*d).or_default().push(t.position);
            }
        }
        while let Some(p) = free.pop() {
            waiting.remove(&p);
            for dependent in dependents.get(&p).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(dependent) {
                    *n -= 1;
                    if *n == 0 {
                        free.push(*dependent);
                    }
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let stuck: Vec<String> = waiting.keys().map(u32::to_string).collect();
        Err(DomainError::invalid(
            "tasks",
            format!(
                "dependencies form a cycle through positions {}",
                stuck.join(", ")
            ),
        ))
    }

    /// Rebuilds a set that was validated when it was stored.
    pub fn from_stored(mut templates: Vec<TaskTemplate>) -> Templates {
        templates.sort_by_key(|t| t.position);
        Templates(templates)
    }

    pub fn as_slice(&self) -> &[TaskTemplate] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(position: u32, deps: &[u32]) -> TemplateDraft {
        TemplateDraft {
            position: Some(position),
            name: format!("task {position}"),
            depends_on: deps.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn templates_are_kept_in_position_order() {
        let ts = Templates::parse(vec![t(3, &[1]), t(1, &[]), t(2, &[1])]).unwrap();
        let positions: Vec<u32> = ts.as_slice().iter().map(|t| t.position).collect();
        assert_eq!(positions, vec![1, 2, 3]);
    }

    #[test]
    fn positions_default_to_the_list_order() {
        let mut a = t(0, &[]);
        a.position = None;
        let mut b = t(0, &[1]);
        b.position = None;
        let ts = Templates::parse(vec![a, b]).unwrap();
        assert_eq!(ts.as_slice()[1].position, 2);
        assert!(ts.as_slice()[1].depends_on.contains(&1));
    }

    #[test]
    fn duplicate_positions_are_refused_naming_the_task() {
        let err = Templates::parse(vec![t(1, &[]), t(1, &[])]).unwrap_err();
        assert_eq!(err.field(), Some("tasks[1].position"));
    }

    #[test]
    fn an_unknown_dependency_is_refused() {
        let err = Templates::parse(vec![t(1, &[]), t(2, &[9])]).unwrap_err();
        assert_eq!(err.field(), Some("tasks[position=2].depends_on"));
    }

    #[test]
    fn a_cycle_is_refused_naming_its_positions() {
        let err = Templates::parse(vec![t(1, &[]), t(2, &[3]), t(3, &[2])]).unwrap_err();
        assert!(matches!(&err, DomainError::Invalid { message, .. } if message.contains("2, 3")));
        let err = Templates::parse(vec![t(1, &[1])]).unwrap_err();
        assert_eq!(err.field(), Some("tasks[0].depends_on"));
    }

    #[test]
    fn the_templates_text_is_bounded_so_events_fit_a_message() {
        let big: Vec<TemplateDraft> = (1..=20)
            .map(|p| TemplateDraft {
                position: Some(p),
                name: format!("t{p}"),
                description: "x".repeat(15_000),
                ..Default::default()
            })
            .collect();
        assert_eq!(Templates::parse(big).unwrap_err().field(), Some("tasks"));
    }

    #[test]
    fn positions_are_1_based_and_bounded() {
        assert_eq!(
            Templates::parse(vec![t(0, &[])]).unwrap_err().field(),
            Some("tasks[0].position")
        );
        assert!(Templates::parse(vec![t(MAX_POSITION + 1, &[])]).is_err());
    }

    #[test]
    fn size_limits_hold() {
        assert!(Templates::parse(vec![]).is_err());
        let many: Vec<TemplateDraft> = (1..=MAX_TEMPLATES as u32 + 1).map(|p| t(p, &[])).collect();
        assert!(Templates::parse(many).is_err());
        let chain: Vec<TemplateDraft> = (1..=MAX_TEMPLATES as u32)
            .map(|p| if p == 1 { t(1, &[]) } else { t(p, &[p - 1]) })
            .collect();
        assert_eq!(Templates::parse(chain).unwrap().len(), MAX_TEMPLATES);
    }

    #[test]
    fn assignee_types_and_skills_are_checked() {
        let mut a = t(1, &[]);
        a.default_assignee_type = Some("system9".into());
        assert_eq!(
            Templates::parse(vec![a]).unwrap_err().field(),
            Some("tasks[0].default_assignee_type")
        );
        let mut b = t(1, &[]);
        b.required_skills = vec!["rust".into(), " rust ".into(), "sql".into()];
        let ts = Templates::parse(vec![b]).unwrap();
        assert_eq!(ts.as_slice()[0].required_skills, vec!["rust", "sql"]);
    }
}
