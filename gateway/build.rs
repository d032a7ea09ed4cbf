//! Embeds the static web player (`../web-player`) and the admin web UI (`ui/`) into the binary, so `serve` and `export`
//! need nothing beside the executable.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-player");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    files.extend(rrweb_player_files());
    files.sort();
    let mut code = String::from("/// Player files: (relative path, bytes).\npub static PLAYER_FILES: &[(&str, &[u8])] = &[\n");
    let generated = std::env::var("OUT_DIR").expect("OUT_DIR");
    for (rel, abs) in &files {
        // Files written here are not watched (they are rewritten on every run).
        if !abs.starts_with(&generated) {
            println!("cargo:rerun-if-changed={abs}");
        }
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("player_assets.rs");
    std::fs::write(out, code).expect("write player_assets.rs");
    ui_assets();
    recorder_assets();
}

/// Embeds the admin web UI (`ui/`: static HTML, CSS and JavaScript, no build step).
fn ui_assets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Web UI files: (relative path, bytes).\npub static UI_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={abs}");
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui_assets.rs");
    std::fs::write(out, code).expect("write ui_assets.rs");
}

/// Embeds the in-page web recorder: psmgate's `web-recorder/recorder.js` and rrweb's recorder
/// bundle from `web-recorder/node_modules` (installed by `npm ci` there, which
/// `scripts/install-deps.sh` runs). Without the bundle the binary is built all the same and the
/// web proxy refuses to start, saying how to install it. Likewise the session video renderer's
/// replay page: `web-recorder/replay.js` and rrweb's replayer bundle (without it, web sessions
/// are recorded without video).
fn recorder_assets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-recorder");
    let glue = dir.join("recorder.js");
    let rrweb = dir.join("node_modules/@rrweb/record/dist/record.umd.min.cjs");
    let replay_glue = dir.join("replay.js");
    let replayer = dir.join("node_modules/rrweb/dist/rrweb.umd.min.cjs");
    for p in [&glue, &rrweb, &replay_glue, &replayer] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
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
    let _ = writeln!(
        code,
        "/// psmgate's replay glue (web-recorder/replay.js).\npub static REPLAY_GLUE: &str = include_str!({:?});",
        abs(&replay_glue)
    );
    if replayer.exists() {
        let _ = writeln!(
            code,
            "/// rrweb's replayer bundle (rrweb, UMD).\npub static RRWEB_REPLAY: Option<&str> = Some(include_str!({:?}));",
            abs(&replayer)
        );
    } else {
        println!(
            "cargo:warning=web-recorder/node_modules/rrweb is missing: run `npm ci` in web-recorder (scripts/install-deps.sh does) or web sessions are recorded without video"
        );
        code.push_str("/// rrweb's replayer bundle: not installed at build time.\npub static RRWEB_REPLAY: Option<&str> = None;\n");
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("recorder_assets.rs");
    std::fs::write(out, code).expect("write recorder_assets.rs");
}

/// rrweb's replayer bundle and stylesheet for the player's DOM replay view, from
/// `web-recorder/node_modules/rrweb` (installed by `npm ci` there), as `vendor/rrweb.min.js` and
/// `vendor/rrweb.min.css`. The script gets a licence line in front and loses its source-map
/// comment (the map is not shipped). Without the package the player is built without them and
/// its DOM replay view says so.
fn rrweb_player_files() -> Vec<(String, String)> {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-recorder/node_modules");
    let package = modules.join("rrweb");
    let js = package.join("dist/rrweb.umd.min.cjs");
    let css = package.join("dist/style.min.css");
    if !js.exists() {
        // Watch what an install touches, so installing the package later rebuilds the player.
        let lock = modules.join(".package-lock.json");
        let watch = if lock.exists() {
            lock
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-recorder")
        };
        println!("cargo:rerun-if-changed={}", watch.display());
        println!(
            "cargo:warning=web-recorder/node_modules/rrweb is missing: the player's DOM replay view will be unavailable (run `npm ci` in web-recorder)"
        );
        return Vec::new();
    }
    println!("cargo:rerun-if-changed={}", js.display());
    println!(
        "cargo:rerun-if-changed={}",
        package.join("package.json").display()
    );
    let version = std::fs::read_to_string(package.join("package.json"))
        .ok()
        .and_then(|p| {
            let at = p.find("\"version\"")?;
            let rest = &p[at + "\"version\"".len()..];
            let start = rest.find('"')? + 1;
            let end = start + rest[start..].find('"')?;
            Some(rest[start..end].to_string())
        })
        .unwrap_or_else(|| "(unknown version)".into());
    let bundle = std::fs::read_to_string(&js).expect("read rrweb's replayer bundle");
    // Only the bundle's own last line: the same text also occurs inside its inlined worker.
    let body = bundle.trim_end();
    let body = match body.rsplit_once('\n') {
        Some((code, last))
            if last
                .strip_prefix("//# sourceMappingURL=")
                .is_some_and(|url| !url.contains(char::is_whitespace)) =>
        {
            code
        }
        _ => body,
    };
    let script = format!(
        "/*! rrweb {version} | MIT License | https://github.com/rrweb-io/rrweb */\n{body}\n"
    );
    let out_dir = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("vendor");
    std::fs::create_dir_all(&out_dir).expect("create OUT_DIR/vendor");
    let script_path = out_dir.join("rrweb.min.js");
    std::fs::write(&script_path, script).expect("write vendor/rrweb.min.js");
    let mut files = vec![(
        "vendor/rrweb.min.js".to_string(),
        script_path.display().to_string(),
    )];
    if css.exists() {
        println!("cargo:rerun-if-changed={}", css.display());
        files.push((
            "vendor/rrweb.min.css".to_string(),
            css.canonicalize().unwrap_or(css).display().to_string(),
        ));
    }
    files
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
