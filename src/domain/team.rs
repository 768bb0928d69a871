//! Teams and their rosters. A team name is also a NATS subject token (events end with it), so
//! it is restricted to letters, digits, `-` and `_`.

use super::error::DomainError;
use super::system::SystemKind;

pub const MAX_TEAM_NAME: usize = 64;

pub fn parse_team_name(raw: &str) -> Result<String, DomainError> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.len() <= MAX_TEAM_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(DomainError::invalid(
            "name",
            format!("`{raw}` must be 1-{MAX_TEAM_NAME} letters, digits, '-' or '_'"),
        ))
    }
}

/// A team has at most one each of System2..System5 and any number of System1s.
pub fn check_roster(kinds: &[SystemKind]) -> Result<(), DomainError> {
    for kind in &SystemKind::ALL[1..] {
        let n = kinds.iter().filter(|k| *k == kind).count();
        if n > 1 {
            return Err(DomainError::invalid(
                "systems",
                format!("a team has at most one {kind} ({n} given)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names_are_subject_tokens() {
        assert_eq!(parse_team_name(" discovery-1 ").unwrap(), "discovery-1");
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(parse_team_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_team_has_one_system5_but_many_system1s() {
        use SystemKind::*;
        assert!(check_roster(&[System1, System1, System3, System4, System5]).is_ok());
        assert!(check_roster(&[System5, System5]).is_err());
    }
}
