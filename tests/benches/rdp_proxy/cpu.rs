//! Part 3: CPU per recorded session. One xfreerdp client through psmgate for `seconds` while the
//! target does what an admin session does: typing (XTEST on the client's display, ~5 characters
//! a second into the demo app's xterm, Enter after each sentence), a terminal printing a line
//! every 250 ms with a 300-line burst every 10 s, and a full-screen window shown for 2 s every
//! 20 s (an application switch). The gateway's CPU time over the wall time (`/proc/<pid>/stat`)
//! is the cost of one recorded 1080p session: TLS both ways, forwarding, passive decoding and
//! AV1 encoding.

use crate::gateway::{
    client_options, find_pid, start_target, thread_cpu_seconds, thread_share, Client, Gateway, Path,
};
use crate::vnc_gateway::{machine_jiffies, process_cpu_seconds};
use crate::xclient::xterm;
use crate::xproto::{XConn, XK_RETURN};
use anyhow::{bail, Context, Result};
use psmgate_e2e::peers::XDisplay;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What is typed, sentence by sentence (lowercase letters and spaces only).
const SENTENCES: &[&str] = &[
    "get service name w32time",
    "tail f var log syslog",
    "systemctl status sshd",
    "ls la etc ssh",
    "journalctl u nginx since today",
];
/// Pause between typed characters.
const TYPE_EVERY: Duration = Duration::from_millis(200);
/// The activity terminal: a line every 250 ms, a burst of 300 lines every 40 lines.
pub const ACTIVITY: &str = "i=0; while :; do i=$((i+1)); \
    printf 'line %06d  the quick brown fox jumps over the lazy dog  0123456789 ABCDEF\\n' $i; \
    if [ $((i % 40)) -eq 0 ]; then ls -l --color=always /usr/bin | head -n 300; fi; \
    sleep 0.25; done";
/// The full-screen window's content.
const SWITCH: &str = "ls -l --color=always /usr/lib /usr/share | head -n 400; exec sleep 1000000";
/// The full-screen window is shown this often …
const SWITCH_EVERY: Duration = Duration::from_secs(20);
/// … for this long.
const SWITCH_SHOWN: Duration = Duration::from_secs(2);
/// Time after connecting before measuring.
const WARM_UP: Duration = Duration::from_secs(3);

/// Options of the CPU part.
pub struct Options {
    /// Screen size.
    pub width: u32,
    /// Screen size.
    pub height: u32,
    /// Measured session length.
    pub seconds: f64,
    /// Extra xfreerdp arguments.
    pub client_args: Vec<String>,
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    println!(
        "\n## 3. CPU per recorded {}×{} session, {:.0} s of typing, terminal output and window switches",
        opts.width, opts.height, opts.seconds
    );
    let target = start_target(opts.width, opts.height)?;
    let display = target.display();
    let (_activity, _) = xterm(display, &["-geometry", "100x30-0-0"], ACTIVITY)?;
    let (switch, _) = xterm(
        display,
        &[
            "-geometry",
            &format!("{}x{}+0+0", opts.width / 6 - 2, opts.height / 13 - 1),
        ],
        SWITCH,
    )?;
    let switch_window = window_id(display, &switch.instance)?;
    xdotool(display, &["windowunmap", "--sync", &switch_window])?;
    let mut gw = Gateway::start(&target.address())?;
    let token = gw.grant()?;
    println!(
        "\nsetup: Xvfb + DemoApp (maximized xterm running `cat`, keyboard focus) + an xterm \
         100x30 at the bottom right printing a line every 250 ms and 300 lines of `ls -l --color` \
         every 10 s + a screen-filling xterm of `ls -l --color` mapped for {} s every {} s + \
         freerdp-shadow-cli /sec:nla; one xfreerdp client through psmgate typing ~{:.0} characters \
         a second (XTEST on the client's display), Enter after each sentence; {} s warm-up; \
         default recording settings.",
        SWITCH_SHOWN.as_secs(),
        SWITCH_EVERY.as_secs(),
        1.0 / TYPE_EVERY.as_secs_f64(),
        WARM_UP.as_secs()
    );
    let (mut c, mut keys) = Client::connect(
        client_options(Path::Proxied, &target, &gw, &token, &opts.client_args),
        Path::Proxied,
    )?;
    let shadow_pid = find_pid(&["freerdp-shadow-cli", &format!("/port:{}", target.port())]);
    let client_pid = find_pid(&["xfreerdp", &format!("/v:127.0.0.1:{}", gw.rdp_port)]);
    let other = |pid: Option<u32>| pid.and_then(process_cpu_seconds).unwrap_or(0.0);
    std::thread::sleep(WARM_UP);
    let stop = AtomicBool::new(false);
    let typed = AtomicU64::new(0);
    let pid = gw.pid();
    let (cpu0, mj0) = (
        process_cpu_seconds(pid).unwrap_or(0.0),
        machine_jiffies().unwrap_or((0, 0)),
    );
    let (th0, shadow0, client0) = (
        thread_cpu_seconds(pid),
        other(shadow_pid),
        other(client_pid),
    );
    let t0 = Instant::now();
    let measured = Duration::from_secs_f64(opts.seconds);
    std::thread::scope(|s| -> Result<()> {
        let typist = s.spawn(|| type_text(&mut keys, &stop, &typed));
        let mut shown = false;
        let mut next = t0 + SWITCH_EVERY / 2;
        while t0.elapsed() < measured {
            let now = Instant::now();
            if now >= next {
                let verb = if shown { "windowunmap" } else { "windowmap" };
                xdotool(display, &[verb, &switch_window])?;
                shown = !shown;
                next += if shown {
                    SWITCH_SHOWN
                } else {
                    SWITCH_EVERY - SWITCH_SHOWN
                };
            }
            std::thread::sleep(
                Duration::from_millis(20).min(measured.saturating_sub(t0.elapsed())),
            );
        }
        if shown {
            xdotool(display, &["windowunmap", &switch_window])?;
        }
        stop.store(true, Ordering::SeqCst);
        typist
            .join()
            .unwrap_or_else(|_| bail!("typing thread panicked"))
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, mj1) = (
        process_cpu_seconds(pid).unwrap_or(0.0),
        machine_jiffies().unwrap_or((0, 0)),
    );
    let (th1, shadow1, client1) = (
        thread_cpu_seconds(pid),
        other(shadow_pid),
        other(client_pid),
    );
    let stayed_up = c.rdp.is_running();
    let session_started = gw
        .log_lines("RDP session authorised")
        .first()
        .cloned()
        .unwrap_or_default();
    drop(c);
    let recs = gw.sealed(1, Duration::from_secs(60));
    let rec = recs.first().context("no recording")?;
    let m = crate::recording::manifest(rec)?;
    let bytes = dir_bytes(rec);
    let duration_s = m["duration_ms"].as_f64().map_or(secs, |d| d / 1000.0);
    let verified = gw.verify(rec);
    let errors = gw.decode_errors();
    let session_errors = gw.log_lines("RDP session ended with an error");
    gw.stop();
    let cpu = 100.0 * (cpu1 - cpu0) / secs;
    let busy = 100.0 * (mj1.0 - mj0.0) as f64 / (mj1.1 - mj0.1).max(1) as f64;
    println!(
        "\n| session | gateway CPU (% of a core) | shadow / xfreerdp CPU | machine busy (2 cores) | characters typed | recording MB | recorded s | MB / hour | state | verify | decode errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} s{} | **{cpu:.1}** | {:.0} / {:.0} % | {busy:.0} % | {} | {:.2} | {duration_s:.0} | **{:.1}** | {} | {} | {errors} |",
        secs,
        if stayed_up { "" } else { " (client dropped)" },
        100.0 * (shadow1 - shadow0) / secs,
        100.0 * (client1 - client0) / secs,
        typed.load(Ordering::SeqCst),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / duration_s * 3600.0,
        m["state"].as_str().unwrap_or("?"),
        if verified.is_ok() { "ok" } else { "**failed**" },
    );
    println!(
        "\ngateway CPU by thread (tokio-runtime-w: TLS, forwarding and the passive RDP decoder; \
         rec-*: the session's recorder — scheduling, colour conversion, AV1 encoding, storage — \
         and the encoder threads it starts): {}",
        thread_share(&th0, &th1, cpu1 - cpu0, secs)
    );
    if let Err(e) = verified {
        println!("\n{e:#}");
    }
    for l in session_errors.iter().take(3) {
        println!("\ngateway log: {l}");
    }
    if session_started.is_empty() {
        println!("\n(the gateway did not log the session start)");
    }
    println!(
        "\n(recording = every file of the sealed recording: video, transcript, chain, manifest; \
         MB/hour over the recorded duration; the CPU window is the {secs:.0} s of activity, the \
         recording also covers the warm-up and the hang-up.)"
    );
    Ok(())
}

/// Types the sentences over and over until `stop`.
fn type_text(keys: &mut XConn, stop: &AtomicBool, typed: &AtomicU64) -> Result<()> {
    for sentence in SENTENCES.iter().cycle() {
        for ch in sentence.bytes() {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            keys.tap(u32::from(ch))?;
            typed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(TYPE_EVERY);
        }
        keys.tap(XK_RETURN)?;
        std::thread::sleep(TYPE_EVERY);
    }
    Ok(())
}

/// Total size of the files below `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += dir_bytes(&p);
        } else {
            n += e.metadata().map_or(0, |m| m.len());
        }
    }
    n
}

/// The id of the window with instance name `instance` (mapped or not).
fn window_id(display: &XDisplay, instance: &str) -> Result<String> {
    let o = Command::new("xdotool")
        .env("DISPLAY", display.name())
        .env_remove("XAUTHORITY")
        .args(["search", "--classname", &format!("^{instance}$")])
        .output()
        .context("running xdotool")?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("no window {instance}"))
}

/// Runs `xdotool ARGS` on `display`.
pub fn xdotool(display: &XDisplay, args: &[&str]) -> Result<()> {
    let o = Command::new("xdotool")
        .env("DISPLAY", display.name())
        .env_remove("XAUTHORITY")
        .args(args)
        .output()
        .context("running xdotool")?;
    if !o.status.success() {
        bail!(
            "xdotool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}
