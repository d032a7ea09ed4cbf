//! Folder layout: one folder per recording, `YYYY/MM/DD/<session-id>` below the storage root,
//! dated by the session start in UTC.

use std::io;

use time::{OffsetDateTime, UtcOffset};

use crate::backend::Backend;

/// The final manifest, written at seal.
pub const MANIFEST: &str = "manifest.json";
/// The working copy of the manifest while recording.
pub const PARTIAL_MANIFEST: &str = "manifest.partial.json";
/// The hash chain.
pub const CHAIN: &str = "chain.jsonl";

/// The folder of a recording: `YYYY/MM/DD/<id>` with the date of `started_at` in UTC.
pub fn recording_dir(started_at: OffsetDateTime, id: &str) -> String {
    let utc = started_at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}/{:02}/{:02}/{}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        id
    )
}

/// Whether `id` is a lowercase, hyphenated UUID (`8-4-4-4-12` hex digits).
pub fn is_session_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `dir` has the shape `YYYY/MM/DD/<session-id>`.
pub fn is_recording_dir(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    matches!(parts.as_slice(), [y, m, d, id]
        if is_digits(y, 4) && is_digits(m, 2) && is_digits(d, 2) && is_session_id(id))
}

/// The session id of a recording folder (its last component).
pub fn session_id_of(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Every recording folder below the root, sorted (oldest date first). Folders that do not have
/// the `YYYY/MM/DD/<session-id>` shape are ignored.
pub fn list_recordings(backend: &dyn Backend) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for year in backend
        .list_dirs("")?
        .into_iter()
        .filter(|y| is_digits(y, 4))
    {
        for month in backend
            .list_dirs(&year)?
            .into_iter()
            .filter(|m| is_digits(m, 2))
        {
            let ym = format!("{year}/{month}");
            for day in backend
                .list_dirs(&ym)?
                .into_iter()
                .filter(|d| is_digits(d, 2))
            {
                let ymd = format!("{ym}/{day}");
                for id in backend.list_dirs(&ymd)? {
                    if is_session_id(&id) {
                        out.push(format!("{ymd}/{id}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Finds the folder of the recording `id` by searching the date tree (newest date first).
pub fn find_recording(backend: &dyn Backend, id: &str) -> io::Result<Option<String>> {
    if !is_session_id(id) {
        return Ok(None);
    }
    for year in backend
        .list_dirs("")?
        .into_iter()
        .rev()
        .filter(|y| is_digits(y, 4))
    {
        for month in backend
            .list_dirs(&year)?
            .into_iter()
            .rev()
            .filter(|m| is_digits(m, 2))
        {
            let ym = format!("{year}/{month}");
            for day in backend
                .list_dirs(&ym)?
                .into_iter()
                .rev()
                .filter(|d| is_digits(d, 2))
            {
                let ymd = format!("{ym}/{day}");
                if backend.list_dirs(&ymd)?.iter().any(|d| d == id) {
                    return Ok(Some(format!("{ymd}/{id}")));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use time::macros::datetime;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn dir_uses_utc_date() {
        assert_eq!(
            recording_dir(datetime!(2026-01-02 23:30 -02:00), ID),
            format!("2026/01/03/{ID}")
        );
        assert!(is_recording_dir(&format!("2026/01/03/{ID}")));
        assert!(!is_recording_dir("2026/01/03"));
        assert!(!is_recording_dir(&format!("2026/1/03/{ID}")));
        assert!(!is_session_id(&ID.to_uppercase()));
    }

    #[test]
    fn list_and_find() {
        let tmp = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(tmp.path()).unwrap();
        let a = format!("2026/01/03/{ID}");
        let other = "2025/12/31/11111111-2222-4333-8444-555555555555";
        b.append(&format!("{a}/chain.jsonl"), b"x").unwrap();
        b.append(&format!("{other}/chain.jsonl"), b"x").unwrap();
        b.append("2025/notes/x", b"x").unwrap();
        assert_eq!(
            list_recordings(&b).unwrap(),
            vec![other.to_owned(), a.clone()]
        );
        assert_eq!(find_recording(&b, ID).unwrap(), Some(a));
        assert_eq!(
            find_recording(&b, "22222222-2222-4333-8444-555555555555").unwrap(),
            None
        );
    }
}
