//! Reading the audit log (`recordings/audit.jsonl`) from a position on, as it grows, whoever
//! appends to it (this process or a `psmgate` command). Blocking: call from the blocking pool.
//!
//! A position is the byte offset just after an entry (0: before the first) and that entry's
//! seq. Only complete lines are read: a line still being written is read once it is complete.
//! Every entry read must have the next seq and chain onto the entry before it (its `prev` is
//! that entry's head); anything else (a line that does not parse, a seq out of order, a broken
//! chain, a log shorter than the position) is an error, never skipped.

use psmgate_storage::audit::{audit_genesis, AuditEntry, AUDIT_LOG};
use psmgate_storage::backend::Backend;
use psmgate_storage::chain::Digest;

/// Most bytes read at once when counting lines (a longer entry is read whole).
const CHUNK: u64 = 4 << 20;
/// Bytes read at once when reading entries (a longer entry is read whole).
const READ: u64 = 256 << 10;

/// A place in the audit log: just after entry `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The entry's seq (0: before the first entry).
    pub seq: u64,
    /// Byte offset just after its line.
    pub offset: u64,
    /// Its head (`None` before the first entry).
    pub head: Option<Digest>,
}

/// An entry read, with the position just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The entry.
    pub entry: AuditEntry,
    /// Just after it.
    pub after: Position,
}

/// Why the log could not be read on from a position.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Reading the file failed.
    #[error("reading the audit log: {0}")]
    Io(#[from] std::io::Error),
    /// A complete line is not an audit entry.
    #[error("audit log entry {seq} does not parse: {reason}")]
    Parse {
        /// The seq the line should have had.
        seq: u64,
        /// The parser's message.
        reason: String,
    },
    /// An entry has another seq than the next one.
    #[error("audit log entry after {after} has seq {found}")]
    Sequence {
        /// The position's seq.
        after: u64,
        /// The seq read.
        found: u64,
    },
    /// An entry does not chain onto the entry before it: the log was replaced or altered.
    #[error("audit log entry {seq} does not chain onto the entry before it")]
    Chain {
        /// The entry's seq.
        seq: u64,
    },
    /// The log is shorter than the position: it was cut or replaced.
    #[error(
        "the audit log is shorter ({len} bytes) than the position of entry {seq} ({offset} bytes)"
    )]
    Shrunk {
        /// The position's seq.
        seq: u64,
        /// The position's offset.
        offset: u64,
        /// The log's length now.
        len: u64,
    },
    /// The log has fewer entries than asked for.
    #[error("the audit log has {entries} entries, fewer than {wanted}")]
    Short {
        /// Complete entries in the log.
        entries: u64,
        /// The seq looked for.
        wanted: u64,
    },
}

fn parse(line: &[u8], seq: u64) -> Result<AuditEntry, TailError> {
    serde_json::from_slice(line).map_err(|e| TailError::Parse {
        seq,
        reason: e.to_string(),
    })
}

fn log_len(backend: &dyn Backend) -> Result<u64, TailError> {
    Ok(backend.len(AUDIT_LOG)?.unwrap_or(0))
}

/// The position just after entry `seq` (0: the start), found by counting lines from the start
/// of the log; the entry there must have that seq.
pub fn find(backend: &dyn Backend, seq: u64) -> Result<Position, TailError> {
    if seq == 0 {
        return Ok(Position::default());
    }
    let len = log_len(backend)?;
    let (mut offset, mut lines) = (0u64, 0u64);
    while offset < len {
        let chunk = backend.read_range(AUDIT_LOG, offset, (len - offset).min(CHUNK))?;
        let mut start = 0usize;
        for (i, _) in chunk.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            lines += 1;
            if lines == seq {
                let line = chunk.get(start..i).unwrap_or_default();
                let line = if start == 0 && offset > 0 {
                    // The line began in an earlier chunk: read it whole.
                    let begin = line_start(backend, offset)?;
                    backend.read_range(AUDIT_LOG, begin, offset + i as u64 - begin)?
                } else {
                    line.to_vec()
                };
                let entry = parse(&line, seq)?;
                if entry.seq != seq {
                    return Err(TailError::Sequence {
                        after: seq - 1,
                        found: entry.seq,
                    });
                }
                return Ok(Position {
                    seq,
                    offset: offset + i as u64 + 1,
                    head: Some(entry.head),
                });
            }
            start = i + 1;
        }
        offset += chunk.len() as u64;
    }
    Err(TailError::Short {
        entries: lines,
        wanted: seq,
    })
}

/// Where the line holding byte `offset` starts: just after the last newline before it.
fn line_start(backend: &dyn Backend, offset: u64) -> Result<u64, TailError> {
    let mut end = offset;
    while end > 0 {
        let from = end.saturating_sub(CHUNK);
        let chunk = backend.read_range(AUDIT_LOG, from, end - from)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// The position after the last complete entry.
pub fn end(backend: &dyn Backend) -> Result<Position, TailError> {
    let len = log_len(backend)?;
    let (mut offset, mut lines) = (0u64, 0u64);
    while offset < len {
        let chunk = backend.read_range(AUDIT_LOG, offset, (len - offset).min(CHUNK))?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        offset += chunk.len() as u64;
    }
    find(backend, lines)
}

/// Up to `max` complete entries after `from`, each with the position after it. Entries before
/// a bad one are returned; the error comes when reading on from the last of them.
pub fn read_after(
    backend: &dyn Backend,
    from: Position,
    max: usize,
) -> Result<Vec<Read>, TailError> {
    let len = log_len(backend)?;
    if len < from.offset {
        return Err(TailError::Shrunk {
            seq: from.seq,
            offset: from.offset,
            len,
        });
    }
    let mut out = Vec::new();
    let mut pos = from;
    let mut want = READ;
    while out.len() < max && pos.offset < len {
        let chunk = backend.read_range(AUDIT_LOG, pos.offset, (len - pos.offset).min(want))?;
        let Some(last_newline) = chunk.iter().rposition(|&b| b == b'\n') else {
            if (chunk.len() as u64) < want {
                break; // only an incomplete line so far
            }
            want = want.saturating_mul(2); // one long line: read more
            continue;
        };
        let lines = chunk[..=last_newline].split_inclusive(|&b| b == b'\n');
        for line in lines.take(max - out.len()) {
            match next_entry(pos, &line[..line.len() - 1]) {
                Ok(entry) => {
                    pos = Position {
                        seq: entry.seq,
                        offset: pos.offset + line.len() as u64,
                        head: Some(entry.head),
                    };
                    out.push(Read { entry, after: pos });
                }
                // The entries before a bad one are good: they go out first.
                Err(_) if !out.is_empty() => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The entry of `line`, which follows `pos`: the next seq, chained onto `pos`'s entry.
fn next_entry(pos: Position, line: &[u8]) -> Result<AuditEntry, TailError> {
    let seq = pos.seq + 1;
    let entry = parse(line, seq)?;
    if entry.seq != seq {
        return Err(TailError::Sequence {
            after: pos.seq,
            found: entry.seq,
        });
    }
    let prev = if pos.seq == 0 {
        Some(audit_genesis())
    } else {
        pos.head
    };
    if prev.is_some_and(|h| h != entry.prev) {
        return Err(TailError::Chain { seq });
    }
    Ok(entry)
}

/// How many complete entries follow a position, counted incrementally: counting again after
/// the log grew reads only what was added.
#[derive(Debug, Default)]
pub struct Backlog {
    /// The position counted from.
    base: Position,
    /// Bytes counted so far (from `base.offset`).
    scanned: u64,
    /// Complete lines in them.
    lines: u64,
}

impl Backlog {
    /// Entries after `from`, and the time of the first of them.
    pub fn count(
        &mut self,
        backend: &dyn Backend,
        from: Position,
    ) -> Result<(u64, Option<String>), TailError> {
        if from != self.base {
            *self = Backlog {
                base: from,
                scanned: from.offset,
                lines: 0,
            };
        }
        let len = log_len(backend)?;
        while self.scanned < len {
            let chunk =
                backend.read_range(AUDIT_LOG, self.scanned, (len - self.scanned).min(CHUNK))?;
            // Only up to the last newline, so that a line being written is counted once whole.
            let Some(last) = chunk.iter().rposition(|&b| b == b'\n') else {
                break;
            };
            self.lines += chunk[..=last].iter().filter(|&&b| b == b'\n').count() as u64;
            self.scanned += last as u64 + 1;
        }
        let oldest = if self.lines > 0 {
            read_after(backend, from, 1)?
                .into_iter()
                .next()
                .map(|r| r.entry.time)
        } else {
            None
        };
        Ok((self.lines, oldest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmgate_storage::audit::{AuditLog, AuditRecord};
    use psmgate_storage::backend::LocalBackend;
    use std::sync::Arc;

    fn log(n: usize, detail_len: usize) -> (tempfile::TempDir, Arc<dyn Backend>, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let b: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()).unwrap());
        let mut log = AuditLog::open(b.clone()).unwrap();
        for i in 0..n {
            append(&mut log, &format!("{i}:{}", "x".repeat(detail_len)));
        }
        (dir, b, log)
    }

    fn append(log: &mut AuditLog, detail: &str) {
        log.append_record(
            time::OffsetDateTime::now_utc(),
            &AuditRecord {
                action: "login",
                actor: "alice",
                detail,
                ..AuditRecord::default()
            },
        )
        .unwrap();
    }

    fn seqs(r: &[Read]) -> Vec<u64> {
        r.iter().map(|r| r.entry.seq).collect()
    }

    #[test]
    fn reads_on_from_any_position() {
        let (_d, b, mut log) = log(5, 10);
        let all = AuditLog::read_all(b.as_ref()).unwrap();
        let first = read_after(b.as_ref(), Position::default(), 2).unwrap();
        assert_eq!(seqs(&first), [1, 2]);
        let rest = read_after(b.as_ref(), first[1].after, 100).unwrap();
        assert_eq!(seqs(&rest), [3, 4, 5]);
        assert_eq!(rest[0].entry, all[2]);
        assert!(read_after(b.as_ref(), rest[2].after, 100)
            .unwrap()
            .is_empty());
        // Positions found by counting are those reached by reading.
        for r in first.iter().chain(&rest) {
            assert_eq!(find(b.as_ref(), r.entry.seq).unwrap(), r.after);
        }
        assert_eq!(end(b.as_ref()).unwrap(), rest[2].after);
        append(&mut log, "later");
        let more = read_after(b.as_ref(), rest[2].after, 100).unwrap();
        assert_eq!(seqs(&more), [6]);
        assert_eq!(more[0].entry.detail, "later");
        assert!(matches!(
            find(b.as_ref(), 9),
            Err(TailError::Short {
                entries: 6,
                wanted: 9
            })
        ));
        assert_eq!(end(b.as_ref()).unwrap().seq, 6);
    }

    #[test]
    fn incomplete_lines_wait_and_bad_lines_stop() {
        let (_d, b, _log) = log(2, 0);
        let at_end = end(b.as_ref()).unwrap();
        b.append(AUDIT_LOG, b"{\"seq\":3,").unwrap();
        assert!(read_after(b.as_ref(), at_end, 10).unwrap().is_empty());
        assert_eq!(end(b.as_ref()).unwrap(), at_end);
        b.append(AUDIT_LOG, b"\n").unwrap();
        assert!(matches!(
            read_after(b.as_ref(), at_end, 10),
            Err(TailError::Parse { seq: 3, .. })
        ));
        // A seq out of order.
        let (_d, b, _log) = log(3, 0);
        let lines = b.read(AUDIT_LOG).unwrap();
        let text = String::from_utf8(lines).unwrap();
        let mut ls: Vec<&str> = text.lines().collect();
        ls.swap(1, 2);
        b.put_atomic(AUDIT_LOG, format!("{}\n", ls.join("\n")).as_bytes())
            .unwrap();
        let p1 = find(b.as_ref(), 1).unwrap();
        assert!(matches!(
            read_after(b.as_ref(), p1, 10),
            Err(TailError::Sequence { after: 1, found: 3 })
        ));
        // A log cut below the position.
        b.truncate(AUDIT_LOG, 10).unwrap();
        assert!(matches!(
            read_after(b.as_ref(), p1, 10),
            Err(TailError::Shrunk { seq: 1, .. })
        ));
    }

    #[test]
    fn good_entries_before_a_bad_one_come_first_and_chains_are_checked() {
        let (_d, b, _log) = log(2, 0);
        b.append(AUDIT_LOG, b"{}\n").unwrap();
        let good = read_after(b.as_ref(), Position::default(), 10).unwrap();
        assert_eq!(seqs(&good), [1, 2]);
        assert!(matches!(
            read_after(b.as_ref(), good[1].after, 10),
            Err(TailError::Parse { seq: 3, .. })
        ));
        // Entry 2 of another log has the right seq but does not chain onto this entry 1.
        let (_d1, one, _l1) = log(2, 0);
        let (_d2, other, _l2) = log(2, 0);
        let text = |b: &Arc<dyn Backend>| String::from_utf8(b.read(AUDIT_LOG).unwrap()).unwrap();
        let (a, c) = (text(&one), text(&other));
        let mixed = format!(
            "{}\n{}\n",
            a.lines().next().unwrap(),
            c.lines().nth(1).unwrap()
        );
        one.put_atomic(AUDIT_LOG, mixed.as_bytes()).unwrap();
        let first = read_after(one.as_ref(), Position::default(), 10).unwrap();
        assert_eq!(seqs(&first), [1]);
        assert!(matches!(
            read_after(one.as_ref(), first[0].after, 10),
            Err(TailError::Chain { seq: 2 })
        ));
    }

    #[test]
    fn long_entries_across_chunks() {
        // Entries longer than a read chunk.
        let (_d, b, _log) = log(3, (CHUNK as usize) + 100);
        let all = read_after(b.as_ref(), Position::default(), 10).unwrap();
        assert_eq!(seqs(&all), [1, 2, 3]);
        assert_eq!(find(b.as_ref(), 2).unwrap(), all[1].after);
        assert_eq!(find(b.as_ref(), 3).unwrap(), all[2].after);
        assert_eq!(end(b.as_ref()).unwrap(), all[2].after);
    }

    #[test]
    fn the_backlog_is_counted_incrementally() {
        let (_d, b, mut log) = log(4, 0);
        let mut backlog = Backlog::default();
        let start = Position::default();
        let (n, oldest) = backlog.count(b.as_ref(), start).unwrap();
        assert_eq!(n, 4);
        let first = AuditLog::read_all(b.as_ref()).unwrap().remove(0);
        assert_eq!(oldest, Some(first.time));
        append(&mut log, "x");
        b.append(AUDIT_LOG, b"{\"partial").unwrap();
        assert_eq!(backlog.count(b.as_ref(), start).unwrap().0, 5);
        let p3 = find(b.as_ref(), 3).unwrap();
        assert_eq!(backlog.count(b.as_ref(), p3).unwrap().0, 2);
        b.append(AUDIT_LOG, b"\"}\n").unwrap();
        assert_eq!(backlog.count(b.as_ref(), p3).unwrap().0, 3);
        let at_end = Position {
            seq: 0,
            offset: b.len(AUDIT_LOG).unwrap().unwrap(),
            head: None,
        };
        assert_eq!(backlog.count(b.as_ref(), at_end).unwrap(), (0, None));
    }
}
