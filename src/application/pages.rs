//! Lists answer a page at a time: the page sizes a request may ask for, and how many items fit
//! an answer the server accepts.

use serde::Serialize;

use super::Rejection;
use crate::domain::error::ErrorCode;
use crate::wire::page::json_len;

/// Which page of a list to answer: the items after the key `after` (the last item of the
/// previous page), at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<K> {
    pub after: Option<K>,
    pub limit: u64,
}

/// A list's page sizes: what a request without `limit` gets, and the most it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    pub default: u64,
    pub max: u64,
}

impl PageSize {
    /// The page size for a request's `limit`: the default when absent, else within 1..=max.
    pub fn limit(self, asked: Option<u64>) -> u64 {
        asked.map_or(self.default, |n| n.clamp(1, self.max))
    }
}

pub const PROCEDURES_PAGE: PageSize = PageSize {
    default: 50,
    max: 500,
};
pub const HISTORY_PAGE: PageSize = PROCEDURES_PAGE;
pub const TASKS_PAGE: PageSize = PROCEDURES_PAGE;
/// Each run answers with its task counts, read with the run.
pub const RUNS_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};
pub const RUN_TASKS_PAGE: PageSize = PageSize {
    default: 100,
    max: 1000,
};
pub const AUDIT_PAGE: PageSize = PageSize {
    default: 1000,
    max: 10_000,
};

/// One page of a list answer: of `found` (the candidates in key order, up to one more than
/// `limit`), the first that fit in `max_bytes` beside the rest of the answer (`base`: its size
/// with no items and a cursor), and the key of the last one kept when more remain.
pub(crate) fn fit<K: Copy, T: Serialize>(
    base: usize,
    mut found: Vec<(K, T)>,
    limit: u64,
    max_bytes: usize,
) -> Result<(Vec<T>, Option<K>), Rejection> {
    let mut size = base;
    let mut kept = 0;
    for (_, item) in found.iter().take(limit as usize) {
        // One more byte for the comma between items.
        let more = json_len(item).saturating_add(1);
        if size.saturating_add(more) > max_bytes {
            break;
        }
        size += more;
        kept += 1;
    }
    if kept == 0 && !found.is_empty() {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!(
                "the next item alone makes the answer larger than the {max_bytes} bytes the server accepts"
            ),
        ));
    }
    let next = (found.len() > kept).then(|| found[kept - 1].0);
    found.truncate(kept);
    Ok((found.into_iter().map(|(_, item)| item).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` items of 10 bytes each as JSON (`"xxxxxxxx"`), keyed 0..n.
    fn items(n: u32) -> Vec<(u32, String)> {
        (0..n).map(|k| (k, "x".repeat(8))).collect()
    }

    #[test]
    fn a_page_holds_at_most_its_limit_and_names_the_last_key() {
        let (page, next) = fit(10, items(6), 5, 1_000).unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(next, Some(4));
    }

    #[test]
    fn the_last_page_has_no_next_key() {
        let (page, next) = fit(10, items(5), 5, 1_000).unwrap();
        assert_eq!((page.len(), next), (5, None));
        assert_eq!(fit(10, items(0), 5, 1_000).unwrap(), (vec![], None));
    }

    #[test]
    fn a_page_ends_early_at_the_byte_limit() {
        // 10 bytes of the rest, then 11 per item (with its comma): three fit in 45.
        let (page, next) = fit(10, items(6), 5, 45).unwrap();
        assert_eq!((page.len(), next), (3, Some(2)));
    }

    #[test]
    fn an_item_too_large_alone_is_refused() {
        let refused = fit(10, items(1), 5, 20).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooLarge);
    }

    #[test]
    fn asked_page_sizes_stay_within_bounds() {
        assert_eq!(AUDIT_PAGE.limit(None), 1000);
        assert_eq!(AUDIT_PAGE.limit(Some(0)), 1);
        assert_eq!(RUN_TASKS_PAGE.limit(Some(5_000)), 1000);
    }
}
