//! A full disk in the middle of a session: the recording fails closed with a clear reason, the
//! evidence written up to then survives, and the next start recovers it into a recording that
//! verifies. Uses a real, tiny tmpfs (needs root; CI runs as root).

use psmgate_e2e::{psmgate, psmgate_bin, recordings, Tmpfs};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_full_disk_ends_the_recording_and_loses_only_what_did_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(fs) = Tmpfs::mount(&data, "600k") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipping: cannot mount a tmpfs here (not root)");
        return;
    };
    let started = Instant::now();
    let out = Command::new(psmgate_bin())
        .arg("--data")
        .arg(&data)
        .args([
            "demo",
            "--seconds",
            "120",
            "--width",
            "1280",
            "--height",
            "720",
        ])
        .env("PSMGATE_LOG", "warn")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the session must end when recording fails"
    );
    assert!(
        took < Duration::from_secs(100),
        "the session was not ended ({took:?})"
    );
    assert!(
        stderr.contains("recording failed") && stderr.contains("No space left on device"),
        "a clear reason is reported: {stderr}"
    );

    // Space again: the next start recovers what was written before the disk filled up.
    fs.resize("64m");
    let o = psmgate(
        &data,
        &[
            "demo",
            "--seconds",
            "1",
            "--width",
            "320",
            "--height",
            "240",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let failed = recordings(&data)
        .into_iter()
        .find(|r| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(r.join("manifest.json")).unwrap()).unwrap();
            m["periods"][0]["width"] == 1280
        })
        .expect("the recording of the failed session");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failed.join("manifest.json")).unwrap()).unwrap();
    assert!(m["state"] == "interrupted" || m["state"] == "failed", "{m}");
    assert!(
        m["duration_ms"].as_u64().unwrap_or(0) >= 1000,
        "seconds of evidence were kept: {m}"
    );
    let id = failed.file_name().unwrap().to_str().unwrap();
    let o = psmgate(&data, &["verify", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
