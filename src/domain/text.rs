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

/// Trimmed, possibly empty, at most `max` characters, and free of NUL characters (PostgreSQL
/// cannot store them; refused here, both databases answer alike).
pub fn optional(field: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let value = raw.trim();
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if let Some(at) = value.chars().position(|c| c == '\0') {
        return Err(DomainError::invalid(
            field,
            format!("must not contain NUL characters (U+0000 at character {at})"),
        ));
    }
    Ok(value.to_owned())
}

/// The bytes `text` takes inside a JSON string, as serde_json writes it: what a limit on a
/// message's size has to count (a control character takes six bytes, a quote two).
pub fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// `text` cut to at most `max_chars` characters and `max_json` bytes of JSON (see
/// [`json_len`]), with `…` marking a cut.
pub fn excerpt(text: &str, max_chars: usize, max_json: usize) -> String {
    if text.chars().count() <= max_chars && json_len(text) <= max_json {
        return text.to_owned();
    }
    let Some(room) = max_json.checked_sub('…'.len_utf8()) else {
        return String::new();
    };
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars().take(max_chars) {
        let size = json_len(c.encode_utf8(&mut [0; 4]));
        if used + size > room {
            break;
        }
        used += size;
        cut.push(c);
    }
    cut.push('…');
    cut
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
        assert!(optional("f", "a\0b", 3).is_err());
    }

    #[test]
    fn json_len_counts_what_serde_json_writes() {
        for text in ["plain", "\"a\",\\b", "tab\tnl\n\u{1}\u{1f}", "é€😀", ""] {
            let written = serde_json::to_string(text).unwrap().len() - 2;
            assert_eq!(json_len(text), written, "{text:?}");
        }
    }

    #[test]
    fn an_excerpt_keeps_within_both_bounds_and_marks_the_cut() {
        assert_eq!(excerpt("short", 10, 100), "short");
        let quoted = "\"a\",".repeat(100);
        let cut = excerpt(&quoted, 1_000, 50);
        assert!(json_len(&cut) <= 50, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("abcdef", 3, 100), "abc…");
        assert_eq!(excerpt("abcdef", 10, 2), "", "not even the mark fits");
    }
}
