//! Helpers shared by the end-to-end tests in `tests/tests/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `psmgate` binary built for this test run.
pub fn psmgate_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PSMGATE_BIN") {
        return PathBuf::from(p);
    }
    // tests/ is a workspace member: the binary sits in the shared target dir.
    let mut dir = std::env::current_exe().expect("test exe path");
    dir.pop(); // deps
    dir.pop(); // debug
    dir.join("psmgate")
}

/// Runs `psmgate` with a data folder and arguments; returns the output.
pub fn psmgate(data: &Path, args: &[&str]) -> Output {
    Command::new(psmgate_bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .env("PSMGATE_LOG", "warn")
        .output()
        .expect("running psmgate")
}

/// Runs `cmd` with `input` written to its standard input (then closed), its standard output
/// and error captured; returns its output once it exited.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", cmd.get_program()));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The hash `psmgate hash-password` prints for `password` (given on its standard input), for
/// a `password_hash` in a test configuration; panics with its error output if it fails.
pub fn hash_password(password: &str) -> String {
    let o = output_with_stdin(
        Command::new(psmgate_bin()).arg("hash-password"),
        format!("{password}\n").as_bytes(),
    );
    assert!(
        o.status.success(),
        "hash-password: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Output as text, both streams.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The single recording folder below `data/recordings` (YYYY/MM/DD/<id>).
pub fn only_recording(data: &Path) -> PathBuf {
    let mut found = Vec::new();
    walk(&data.join("recordings"), 0, &mut found);
    assert_eq!(found.len(), 1, "expected one recording, found {found:?}");
    found.remove(0)
}

/// Every recording folder below `data/recordings`.
pub fn recordings(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(&data.join("recordings"), 0, &mut found);
    found.sort();
    found
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if depth == 3 {
                out.push(p);
            } else {
                walk(&p, depth + 1, out);
            }
        }
    }
}

/// Concatenates a period's init segment and media segments as listed in the manifest.
pub fn period_mp4(rec: &Path, manifest: &serde_json::Value, period: usize) -> Vec<u8> {
    let p = &manifest["periods"][period];
    let mut out = std::fs::read(rec.join(p["init"].as_str().expect("init"))).expect("init file");
    for s in p["segments"].as_array().expect("segments") {
        out.extend(std::fs::read(rec.join(s["file"].as_str().expect("file"))).expect("segment"));
    }
    out
}

/// A decoded frame: presentation time and the luma plane.
pub struct DecodedFrame {
    /// Presentation time in ms.
    pub pts_ms: u64,
    /// Luma, `width` bytes per row.
    pub y: Vec<u8>,
}

/// Decodes every frame of an MP4 with ffmpeg (libdav1d) into luma planes with their times.
pub fn decode_luma(mp4: &Path, width: u32, height: u32) -> Vec<DecodedFrame> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(mp4)
        .args([
            "-vf",
            &format!("crop={width}:{height}:0:0,showinfo"),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .output()
        .expect("ffmpeg must be installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame_len = (width * height * 3 / 2) as usize;
    assert_eq!(
        out.stdout.len() % frame_len,
        0,
        "decoded size not a whole number of frames"
    );
    // showinfo logs at info level; rerun just for timestamps with ffprobe to keep it simple.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(mp4)
        .output()
        .expect("ffprobe");
    let times: Vec<u64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| (s * 1000.0).round() as u64)
        .collect();
    let frames: Vec<_> = out.stdout.chunks_exact(frame_len).collect();
    assert_eq!(
        times.len(),
        frames.len(),
        "ffprobe and ffmpeg disagree on frame count"
    );
    frames
        .into_iter()
        .zip(times)
        .map(|(f, pts_ms)| DecodedFrame {
            pts_ms,
            y: f[..(width * height) as usize].to_vec(),
        })
        .collect()
}

/// Luma PSNR of `a` against `b` over a rectangle (both `stride` wide).
pub fn psnr(a: &[u8], b: &[u8], stride: u32, x: u32, y: u32, w: u32, h: u32) -> f64 {
    let mut se = 0f64;
    for row in y..y + h {
        for col in x..x + w {
            let i = (row * stride + col) as usize;
            let d = f64::from(a[i]) - f64::from(b[i]);
            se += d * d;
        }
    }
    let mse = se / f64::from(w * h);
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

pub mod peers;

/// Every frame of an image or video file as packed RGB24 (ffmpeg; frames kept as stored, none
/// duplicated or dropped).
pub fn rgb24(path: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg must be installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// RGB PSNR of two `width`×`height` RGB24 pictures over the pixels `skip` does not exclude.
pub fn psnr_rgb(
    a: &[u8],
    b: &[u8],
    width: u32,
    height: u32,
    skip: impl Fn(u32, u32) -> bool,
) -> f64 {
    let (mut se, mut n) = (0f64, 0f64);
    for y in 0..height {
        for x in 0..width {
            if skip(x, y) {
                continue;
            }
            for c in 0..3 {
                let i = ((y * width + x) * 3 + c) as usize;
                let d = f64::from(a[i]) - f64::from(b[i]);
                se += d * d;
                n += 1.0;
            }
        }
    }
    if se == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / (se / n)).log10()
    }
}

/// Asserts that the masked `region` (x, y, width, height) of every decoded RGB24 frame (each
/// `width` pixels wide) is black, 4 pixels in from its edges (the encoder may bleed at them), and
/// returns how many of those pixels are bright in `reference` (the unmasked screen): a mask
/// check only means something where the screen under it is not black anyway.
pub fn assert_region_black(
    frames: &[Vec<u8>],
    reference: &[u8],
    width: u32,
    region: (u32, u32, u32, u32),
) -> usize {
    let (rx, ry, rw, rh) = region;
    let mut bright = 0;
    for y in ry + 4..ry + rh - 4 {
        for x in rx + 4..rx + rw - 4 {
            let i = ((y * width + x) * 3) as usize;
            if reference[i] > 200 {
                bright += 1;
            }
            for f in frames {
                assert!(
                    f[i] < 40 && f[i + 1] < 40 && f[i + 2] < 40,
                    "masked pixel ({x},{y}) not black: {:?}",
                    &f[i..i + 3]
                );
            }
        }
    }
    bright
}

/// Fills the file system holding `path` by writing a file there until it reports ENOSPC.
pub fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
                break;
            }
        }
    }
    let _ = f.flush();
}

/// A tmpfs mounted at a folder, unmounted on drop (needs root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) at `dir`; `None` where mounting is not allowed.
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("creating the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    /// Changes the size of the mounted tmpfs.
    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("running mount");
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// An HTTP answer: status, headers in order, body as text.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Header names and values, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl HttpReply {
    /// The body as JSON (panics, naming status and body, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value `Set-Cookie` gives cookie `name`, with its attributes.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The admin API's error code (`{"error": "<code>"}`).
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// One plain-HTTP/1.1 request to `127.0.0.1:port` (`Connection: close`) with `headers` and
/// `body` (none: empty).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpReply {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line for {method} {path}: {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// [`http_request`] with an optional bearer token and, for `POST`, a JSON body. Returns the
/// status and the body.
pub fn http_call(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let post = method == "POST";
    if post {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http_request(port, method, path, &headers, if post { body } else { None });
    (r.status, r.body)
}
