//! Bounds on free text, so one oversized field cannot bloat every event that carries it.

use super::error::DomainError;

pub const MAX_NAME: usize = 200;
pub const MAX_TEXT: usize = 20_000;

/// Trimmed, non-empty, at most `max` characters.
pub fn required(field: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let value = optional(field, raw, max)?;
    if value.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    Ok(value)
}

/// Trimmed, possibly empty, at most `max` characters.
pub fn optional(field: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_is_trimmed_and_bounded() {
        assert_eq!(required("f", "  a  ", 3).unwrap(), "a");
        assert!(required("f", "  ", 3).is_err());
        assert!(required("f", "abcd", 3).is_err());
        assert_eq!(optional("f", "", 3).unwrap(), "");
    }
}
