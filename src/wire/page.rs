//! Paging on the wire: the opaque cursors of list queries, and the size of an answer as JSON.
//!
//! A cursor is base64url of a tag (which list it pages) and the key of the last item a page
//! returned. Clients pass it back unchanged; only this module reads it, so its layout may
//! change without a contract change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Where the previous page of one list ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// `procedure.list`: after this version, in (series, version) order.
    Procedures { series_id: Uuid, version: u32 },
    /// `procedure.history`: after this version of the series.
    History { series_id: Uuid, version: u32 },
    /// `run.get`: after the run's task at this creation index.
    RunTasks { run_id: Uuid, seq: u32 },
    /// `run.list`: after this run, in id (creation) order.
    Runs { run_id: Uuid },
    /// `task.list`: after this task, in id (creation) order, of this assignee.
    Tasks { assignee: Uuid, task_id: Uuid },
    /// `audit.get`: after this outbox position, of this series and/or run.
    Audit {
        series_id: Option<Uuid>,
        run_id: Option<Uuid>,
        seq: i64,
    },
}

/// A string that is no cursor this service gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor of this query: pass next_cursor from the previous page unchanged")]
pub struct BadCursor;

const PROCEDURES: u8 = 1;
const HISTORY: u8 = 2;
const RUN_TASKS: u8 = 3;
/// Tag 4 was the audit cursor of the outbox's earlier numbering (a row per message): refused.
const AUDIT: u8 = 7;
const TASKS: u8 = 5;
const RUNS: u8 = 6;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(41);
        match *self {
            Cursor::Procedures { series_id, version } => {
                bytes.push(PROCEDURES);
                bytes.extend_from_slice(series_id.as_bytes());
                bytes.extend_from_slice(&version.to_be_bytes());
            }
            Cursor::History { series_id, version } => {
                bytes.push(HISTORY);
                bytes.extend_from_slice(series_id.as_bytes());
                bytes.extend_from_slice(&version.to_be_bytes());
            }
            Cursor::RunTasks { run_id, seq } => {
                bytes.push(RUN_TASKS);
                bytes.extend_from_slice(run_id.as_bytes());
                bytes.extend_from_slice(&seq.to_be_bytes());
            }
            Cursor::Runs { run_id } => {
                bytes.push(RUNS);
                bytes.extend_from_slice(run_id.as_bytes());
            }
            Cursor::Tasks { assignee, task_id } => {
                bytes.push(TASKS);
                bytes.extend_from_slice(assignee.as_bytes());
                bytes.extend_from_slice(task_id.as_bytes());
            }
            Cursor::Audit {
                series_id,
                run_id,
                seq,
            } => {
                // The nil id stands for "not given": ids are v7 (or v4), never nil.
                bytes.push(AUDIT);
                bytes.extend_from_slice(series_id.unwrap_or_default().as_bytes());
                bytes.extend_from_slice(run_id.unwrap_or_default().as_bytes());
                bytes.extend_from_slice(&seq.to_be_bytes());
            }
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Cursor, BadCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| BadCursor)?;
        let (&tag, rest) = bytes.split_first().ok_or(BadCursor)?;
        let id = |b: &[u8]| Uuid::from_slice(b).map_err(|_| BadCursor);
        let given = |u: Uuid| (!u.is_nil()).then_some(u);
        let u32_at = |b: &[u8]| <[u8; 4]>::try_from(b).map(u32::from_be_bytes);
        match (tag, rest.len()) {
            (PROCEDURES, 20) => Ok(Cursor::Procedures {
                series_id: id(&rest[..16])?,
                version: u32_at(&rest[16..]).map_err(|_| BadCursor)?,
            }),
            (HISTORY, 20) => Ok(Cursor::History {
                series_id: id(&rest[..16])?,
                version: u32_at(&rest[16..]).map_err(|_| BadCursor)?,
            }),
            (RUN_TASKS, 20) => Ok(Cursor::RunTasks {
                run_id: id(&rest[..16])?,
                seq: u32_at(&rest[16..]).map_err(|_| BadCursor)?,
            }),
            (RUNS, 16) => Ok(Cursor::Runs { run_id: id(rest)? }),
            (TASKS, 32) => Ok(Cursor::Tasks {
                assignee: id(&rest[..16])?,
                task_id: id(&rest[16..])?,
            }),
            (AUDIT, 40) => Ok(Cursor::Audit {
                series_id: given(id(&rest[..16])?),
                run_id: given(id(&rest[16..32])?),
                seq: <[u8; 8]>::try_from(&rest[32..])
                    .map(i64::from_be_bytes)
                    .map_err(|_| BadCursor)?,
            }),
            _ => Err(BadCursor),
        }
    }
}

/// How many bytes `value` takes as JSON, without building the text.
///
/// A value that cannot be serialised counts as endless, so it never fits.
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cursor_reads_back_as_written() {
        let id = Uuid::now_v7();
        for c in [
            Cursor::Procedures {
                series_id: id,
                version: 7,
            },
            Cursor::History {
                series_id: id,
                version: u32::MAX,
            },
            Cursor::RunTasks { run_id: id, seq: 0 },
            Cursor::Tasks {
                assignee: id,
                task_id: Uuid::now_v7(),
            },
            Cursor::Runs { run_id: id },
            Cursor::Audit {
                series_id: Some(id),
                run_id: None,
                seq: 42,
            },
            Cursor::Audit {
                series_id: None,
                run_id: Some(id),
                seq: i64::MAX,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn strings_that_are_no_cursor_are_refused() {
        let good = Cursor::RunTasks {
            run_id: Uuid::now_v7(),
            seq: 3,
        }
        .encode();
        for bad in ["", "not base64!", "AAAA", &good[..good.len() - 2], "BQ"] {
            assert_eq!(Cursor::decode(bad), Err(BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let v = serde_json::json!({ "a": [1, "é\u{1}", null] });
        assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
