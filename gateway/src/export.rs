//! `psmgate export`: a self-contained folder that opens from disk in a browser.
//!
//! Chromium blocks `fetch()` from `file://`, so everything the player needs is also written as
//! `data.js` (a classic script): manifest (parsed and as exact text, for the seal check), chain,
//! transcript files and the media bytes in base64 with the offset of every original file inside
//! them. `recording.mp4` is the byte concatenation of the first period's init and media segments,
//! so the player verifies exactly the bytes it plays, and other tools (ffprobe, VLC) open it too.

use crate::store::Store;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use psmgate_storage::manifest::Manifest;
use serde_json::json;
use std::path::Path;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// Files written.
    pub files: Vec<String>,
    /// Size of `recording.mp4`.
    pub mp4_bytes: u64,
}

/// Exports the recording in `dir` (below the backend root) to `out`.
pub fn export(store: &Store, dir: &str, out: &Path) -> Result<ExportSummary> {
    let backend = store.backend.as_ref();
    let manifest_text = backend
        .read(&format!("{dir}/manifest.json"))
        .with_context(|| {
            format!("{dir} has no manifest.json: only sealed recordings can be exported")
        })?;
    let manifest = Manifest::from_json(&manifest_text).context("manifest.json does not parse")?;
    let chain = backend
        .read(&format!("{dir}/chain.jsonl"))
        .context("reading chain.jsonl")?;
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        bail!("{} exists and is not empty", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let mut media = Vec::new();
    let mut files = serde_json::Map::new();
    let mut first_period_len = 0u64;
    for (i, p) in manifest.periods.iter().enumerate() {
        for f in std::iter::once(&p.init).chain(p.segments.iter().map(|s| &s.file)) {
            let b = backend
                .read(&format!("{dir}/{f}"))
                .with_context(|| format!("reading {f}"))?;
            files.insert(f.clone(), json!([media.len(), b.len()]));
            media.extend_from_slice(&b);
        }
        if i == 0 {
            first_period_len = media.len() as u64;
        }
    }
    let mut events = serde_json::Map::new();
    let mut merged = Vec::new();
    for f in &manifest.events {
        let b = backend
            .read(&format!("{dir}/{f}"))
            .with_context(|| format!("reading {f}"))?;
        merged.extend_from_slice(&b);
        events.insert(f.clone(), json!(String::from_utf8_lossy(&b)));
    }
    let data = json!({
        "manifest": serde_json::from_slice::<serde_json::Value>(&manifest_text)?,
        "manifest_text": String::from_utf8_lossy(&manifest_text),
        "chain": String::from_utf8_lossy(&chain),
        "media": base64::engine::general_purpose::STANDARD.encode(&media),
        "files": files,
        "events": events,
        "trusted_key": store.key.public_key_base64(),
    });
    let mut written = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        std::fs::write(out.join(name), bytes).with_context(|| format!("writing {name}"))?;
        written.push(name.to_string());
        Ok(())
    };
    write(
        "data.js",
        format!("window.PSMGATE_RECORDING = {data};\n").as_bytes(),
    )?;
    write("recording.mp4", &media[..first_period_len as usize])?;
    write("manifest.json", &manifest_text)?;
    write("chain.jsonl", &chain)?;
    write("events.jsonl", &merged)?;
    for (name, bytes) in crate::assets::PLAYER_FILES {
        if let Some(parent) = Path::new(name).parent() {
            std::fs::create_dir_all(out.join(parent))?;
        }
        write(name, bytes)?;
    }
    Ok(ExportSummary {
        files: written,
        mp4_bytes: first_period_len,
    })
}
