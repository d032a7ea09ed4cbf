//! Embeds the static web player (`../web-player`) into the binary, so `serve` and `export`
//! need nothing beside the executable.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-player");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    files.sort();
    let mut code = String::from("/// Player files: (relative path, bytes).\npub static PLAYER_FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={abs}");
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("player_assets.rs");
    std::fs::write(out, code).expect("write player_assets.rs");
    recorder_assets();
}

/// Embeds the in-page web recorder: psmgate's `web-recorder/recorder.js` and rrweb's recorder
/// bundle from `web-recorder/node_modules` (installed by `npm ci` there, which
/// `scripts/install-deps.sh` runs). Without the bundle the binary is built all the same and the
/// web proxy refuses to start, saying how to install it.
fn recorder_assets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-recorder");
    let glue = dir.join("recorder.js");
    let rrweb = dir.join("node_modules/@rrweb/record/dist/record.umd.min.cjs");
    println!("cargo:rerun-if-changed={}", glue.display());
    println!("cargo:rerun-if-changed={}", rrweb.display());
    let abs = |p: &Path| {
        p.canonicalize()
            .unwrap_or(p.to_path_buf())
            .display()
            .to_string()
    };
    let mut code = String::new();
    let _ = writeln!(
        code,
        "/// psmgate's recorder glue (web-recorder/recorder.js).\npub static RECORDER_GLUE: &str = include_str!({:?});",
        abs(&glue)
    );
    if rrweb.exists() {
        let _ = writeln!(
            code,
            "/// rrweb's recorder bundle (@rrweb/record, UMD).\npub static RRWEB_RECORD: Option<&str> = Some(include_str!({:?}));",
            abs(&rrweb)
        );
    } else {
        println!(
            "cargo:warning=web-recorder/node_modules is missing: run `npm ci` in web-recorder (scripts/install-deps.sh does) or the web proxy will not start"
        );
        code.push_str("/// rrweb's recorder bundle: not installed at build time.\npub static RRWEB_RECORD: Option<&str> = None;\n");
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("recorder_assets.rs");
    std::fs::write(out, code).expect("write recorder_assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.ends_with(".md") {
                continue;
            }
            out.push((
                rel,
                p.canonicalize().unwrap_or(p.clone()).display().to_string(),
            ));
        }
    }
}
