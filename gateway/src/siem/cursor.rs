//! A sink's delivery cursor: `<data_dir>/siem/<name>.cursor`, the seq and head of the last
//! audit entry delivered, as JSON (`{"seq":12,"head":"<hex>"}`). Replaced atomically (a
//! temporary file, synced, renamed over it, the folder synced) after each delivery, so that it
//! names an entry that was delivered, whatever moment the gateway stops at. Blocking.

use anyhow::{Context, Result};
use psmgate_storage::chain::Digest;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Seq of the last entry delivered (0: none yet).
    pub seq: u64,
    /// Its head (absent with seq 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Digest>,
}

/// The cursor file of the sink `name` (a configuration name: no path separators).
pub fn path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("siem").join(format!("{name}.cursor"))
}

/// The cursor stored at `path`; `None` when there is none (a sink seen for the first time).
pub fn load(path: &Path) -> Result<Option<Cursor>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let c: Cursor = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a delivery cursor", path.display()))?;
    Ok(Some(c))
}

/// Replaces the cursor at `path` with `cursor`, durably.
pub fn save(path: &Path, cursor: &Cursor) -> Result<()> {
    let dir = path.parent().context("a cursor path has a parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("cursor.tmp");
    let mut text = serde_json::to_vec(cursor).context("encoding the cursor")?;
    text.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_cursors_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "soc");
        assert!(p.ends_with("siem/soc.cursor"));
        assert_eq!(load(&p).unwrap(), None);
        let c = Cursor {
            seq: 12,
            head: Some(Digest([7; 32])),
        };
        save(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            format!("{{\"seq\":12,\"head\":\"{}\"}}\n", "07".repeat(32))
        );
        let zero = Cursor { seq: 0, head: None };
        save(&p, &zero).unwrap();
        assert_eq!(load(&p).unwrap(), Some(zero));
        assert!(!p.with_extension("cursor.tmp").exists());
        std::fs::write(&p, "garbage").unwrap();
        let e = load(&p).unwrap_err();
        assert!(format!("{e:#}").contains("not a delivery cursor"), "{e:#}");
    }
}
