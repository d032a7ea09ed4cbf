//! The `psmgate` command end to end: demo recording, list/show/verify/export, keys, config
//! checks, tamper detection and crash recovery — all on real files, decoded by ffprobe.

use psmgate_e2e::{only_recording, psmgate, psmgate_bin, recordings, text};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn demo(data: &Path, seconds: u32) -> String {
    let o = psmgate(
        data,
        &[
            "demo",
            "--seconds",
            &seconds.to_string(),
            "--width",
            "640",
            "--height",
            "480",
        ],
    );
    assert!(o.status.success(), "demo failed: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    out.lines()
        .find_map(|l| l.strip_prefix("session "))
        .unwrap_or_else(|| panic!("no session id in {out}"))
        .trim()
        .to_string()
}

fn manifest(rec: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(rec.join("manifest.json")).unwrap()).unwrap()
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe must be installed");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn demo_records_and_every_command_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let id = demo(&data, 5);
    let rec = only_recording(&data);
    assert!(rec.ends_with(&id));
    let m = manifest(&rec);
    assert_eq!(m["state"], "completed");
    assert_eq!(m["periods"][0]["width"], 640);
    assert!(
        m["codec"].as_str().unwrap().starts_with("av01."),
        "{}",
        m["codec"]
    );

    // ffprobe reads the init segment alone and init + each media segment.
    let init = rec.join(m["periods"][0]["init"].as_str().unwrap());
    let probe = ffprobe(&init);
    assert_eq!(probe["streams"][0]["codec_name"], "av1");
    let mut total_frames = 0;
    for s in m["periods"][0]["segments"].as_array().unwrap() {
        let mut bytes = std::fs::read(&init).unwrap();
        bytes.extend(std::fs::read(rec.join(s["file"].as_str().unwrap())).unwrap());
        let p = tmp.path().join("seg.mp4");
        std::fs::write(&p, bytes).unwrap();
        let probe = ffprobe(&p);
        assert_eq!(probe["streams"][0]["width"], 640);
        total_frames += probe["streams"][0]["nb_read_frames"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert!(
        total_frames >= 5,
        "only {total_frames} frames in a 5 s demo"
    );

    let o = psmgate(&data, &["recordings", "list"]);
    assert!(o.status.success() && text(&o).contains(&id), "{}", text(&o));
    // The recorder verified what it sealed: the index shows it from the start.
    let o = psmgate(&data, &["recordings", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["integrity"], "ok", "{rows}");
    let o = psmgate(&data, &["recordings", "show", &id]);
    assert!(
        o.status.success() && text(&o).contains("\"session_id\""),
        "{}",
        text(&o)
    );
    let o = psmgate(&data, &["verify", &id]);
    assert!(o.status.success(), "verify failed: {}", text(&o));
    let o = psmgate(&data, &["verify", rec.to_str().unwrap()]);
    assert!(o.status.success(), "verify by folder failed: {}", text(&o));

    let out = tmp.path().join("export");
    let o = psmgate(&data, &["export", &id, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "export failed: {}", text(&o));
    for f in [
        "index.html",
        "data.js",
        "recording.mp4",
        "manifest.json",
        "chain.jsonl",
        "events.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f} missing from export");
    }
    let probe = ffprobe(&out.join("recording.mp4"));
    assert_eq!(probe["streams"][0]["codec_name"], "av1");
    let data_js = std::fs::read_to_string(out.join("data.js")).unwrap();
    assert!(data_js.starts_with("window.PSMGATE_RECORDING = {"));

    // Legal hold is set, shown in the index and audited; retention keeps a fresh recording.
    let o = psmgate(&data, &["recordings", "hold", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let o = psmgate(&data, &["recordings", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["legal_hold"], true, "{rows}");
    let audit = std::fs::read_to_string(data.join("recordings/audit.jsonl")).unwrap();
    assert!(audit.contains(&id), "hold is audited: {audit}");
    let o = psmgate(&data, &["retention"]);
    assert!(
        o.status.success() && text(&o).contains("0 deleted"),
        "{}",
        text(&o)
    );
    assert!(rec.join("manifest.json").exists());

    let o = psmgate(&data, &["keys", "show"]);
    assert!(
        o.status.success() && text(&o).contains("key id:"),
        "{}",
        text(&o)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("keys/gateway.ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "signing key must be private");
    }
}

/// Each tampering is caught with a message that says what is wrong.
#[test]
fn verify_detects_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let id = demo(&pristine, 5);
    let m = manifest(&only_recording(&pristine));
    let seg = m["periods"][0]["segments"][0]["file"]
        .as_str()
        .unwrap()
        .to_string();

    type Tamper = Box<dyn Fn(&Path)>;
    let seg_for_flip = seg.clone();
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "flip a byte in a segment",
            Box::new(move |rec: &Path| {
                let p = rec.join(&seg_for_flip);
                let mut b = std::fs::read(&p).unwrap();
                let i = b.len() / 2;
                b[i] ^= 0x01;
                std::fs::write(&p, b).unwrap();
            }),
            "sha256 mismatch",
        ),
        (
            "drop a fragment",
            Box::new(|rec: &Path| {
                // Remove the bytes of one chained fragment from its file.
                let chain = std::fs::read_to_string(rec.join("chain.jsonl")).unwrap();
                let r = chain
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .filter(|v| v["file"].as_str().is_some_and(|f| f.ends_with(".m4s")))
                    .nth(1)
                    .expect("a fragment record");
                let p = rec.join(r["file"].as_str().unwrap());
                let mut b = std::fs::read(&p).unwrap();
                let (o, l) = (
                    r["offset"].as_u64().unwrap() as usize,
                    r["len"].as_u64().unwrap() as usize,
                );
                b.drain(o..o + l);
                std::fs::write(&p, b).unwrap();
            }),
            "chain record",
        ),
        (
            "reorder two chain records",
            Box::new(|rec: &Path| {
                let chain = std::fs::read_to_string(rec.join("chain.jsonl")).unwrap();
                let mut lines: Vec<&str> = chain.lines().collect();
                lines.swap(2, 3);
                std::fs::write(rec.join("chain.jsonl"), lines.join("\n") + "\n").unwrap();
            }),
            "record",
        ),
        (
            "truncate the chain",
            Box::new(|rec: &Path| {
                let chain = std::fs::read_to_string(rec.join("chain.jsonl")).unwrap();
                let lines: Vec<&str> = chain.lines().collect();
                std::fs::write(
                    rec.join("chain.jsonl"),
                    lines[..lines.len() - 3].join("\n") + "\n",
                )
                .unwrap();
            }),
            "truncated",
        ),
        (
            "alter the manifest",
            Box::new(|rec: &Path| {
                let p = rec.join("manifest.json");
                let s = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"user\": \"demo\"", "\"user\": \"mallory\"");
                assert!(
                    s.contains("mallory"),
                    "manifest layout changed; fix the test"
                );
                std::fs::write(&p, s).unwrap();
            }),
            "manifest",
        ),
        (
            "append bytes to a segment",
            Box::new(move |rec: &Path| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(rec.join(&seg))
                    .unwrap();
                f.write_all(b"extra").unwrap();
            }),
            "unchained bytes",
        ),
    ];
    for (i, (name, tamper, expect)) in cases.iter().enumerate() {
        let data = tmp.path().join(format!("case{i}"));
        copy_dir(&pristine, &data);
        tamper(&only_recording(&data));
        let o = psmgate(&data, &["verify", &id]);
        let out = text(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name}: verify should fail: {out}"
        );
        assert!(
            out.contains(expect),
            "{name}: expected {expect:?} in: {out}"
        );
    }
    // The untouched recording still passes.
    let o = psmgate(&pristine, &["verify", &id]);
    assert!(o.status.success(), "{}", text(&o));
}

/// kill -9 mid-recording: the next start seals the recording as interrupted, and it verifies.
#[test]
fn a_killed_gateway_leaves_a_verifiable_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new(psmgate_bin())
        .arg("--data")
        .arg(&data)
        .args([
            "demo",
            "--seconds",
            "60",
            "--width",
            "640",
            "--height",
            "480",
        ])
        .env("PSMGATE_LOG", "warn")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(6500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let rec = only_recording(&data);
    assert!(
        !rec.join("manifest.json").exists(),
        "not sealed before recovery"
    );
    assert!(rec.join("manifest.partial.json").exists());

    // Next start (any command that records) recovers first.
    let _ = demo(&data, 1);
    let all = recordings(&data);
    assert_eq!(all.len(), 2);
    let m = manifest(&rec);
    assert_eq!(m["state"], "interrupted", "{m}");
    let kept = m["duration_ms"].as_u64().unwrap_or(0);
    assert!(
        kept >= 2000,
        "recovered recording keeps the flushed seconds, got {kept} ms"
    );
    let id = rec.file_name().unwrap().to_str().unwrap();
    let o = psmgate(&data, &["verify", id]);
    assert!(
        o.status.success(),
        "recovered recording must verify: {}",
        text(&o)
    );
    assert!(!rec.join("manifest.partial.json").exists());
}

#[test]
fn check_config_reports_every_problem_with_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[recording]\nmax_fps = 500\n\n[targets.lab]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5901\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let o = psmgate(tmp.path(), &["check-config", bad.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("bad.toml:2:"),
        "line of max_fps missing: {out}"
    );
    assert!(out.contains("max_fps"), "{out}");
    assert!(
        !out.contains("hunter2"),
        "a secret value must never be echoed: {out}"
    );
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let o = Command::new(psmgate_bin())
        .args(["check-config", sample.to_str().unwrap()])
        .env("PSMGATE_AWS_CONSOLE_PASSWORD", "from-the-environment")
        .output()
        .unwrap();
    assert!(o.status.success(), "sample config must pass: {}", text(&o));
    let o = psmgate(tmp.path(), &["check-config", sample.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "an unset secret is reported: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("PSMGATE_AWS_CONSOLE_PASSWORD is not set"),
        "{}",
        text(&o)
    );
}
