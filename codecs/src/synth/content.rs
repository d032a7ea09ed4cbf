//! What the simulated desktop shows: prompts, titles, the syslog, the clock and the text of
//! windows and applications. Command output lives in [`super::commands`].

use super::rng::{mix, Rng};

/// The shell prompt.
pub(super) const PROMPT: &str = "admin@lab-vnc:~$ ";
/// The terminal window's title.
pub(super) const TERM_TITLE: &str = "admin@lab-vnc: ~";
/// The command that opens the pager in the scrolling phase.
pub(super) const PAGER_CMD: &str = "less /var/log/syslog";

/// Titles of the full-screen applications of the switching phase.
pub(super) const APP_TITLES: [&str; 4] = [
    "vim /etc/nginx/nginx.conf",
    "Grafana - Fleet overview - Chromium",
    "htop - admin@lab-vnc",
    "Event Viewer - Security log",
];

/// Titles of the floating windows of the windows phase.
pub(super) const WINDOW_TITLES: [&str; 3] = [
    "Services - lab-vnc",
    "Notes.txt - Text Editor",
    "Properties: nginx.conf",
];

/// The nginx configuration shown by the editor and the notes window.
pub(super) const CONF: &[&str] = &[
    "user www-data;",
    "worker_processes auto;",
    "pid /run/nginx.pid;",
    "include /etc/nginx/modules-enabled/*.conf;",
    "",
    "events {",
    "    worker_connections 768;",
    "}",
    "",
    "http {",
    "    sendfile on;",
    "    tcp_nopush on;",
    "    types_hash_max_size 2048;",
    "    server_tokens off;",
    "    include /etc/nginx/mime.types;",
    "    default_type application/octet-stream;",
    "    ssl_protocols TLSv1.2 TLSv1.3;",
    "    ssl_prefer_server_ciphers on;",
    "    access_log /var/log/nginx/access.log;",
    "    error_log /var/log/nginx/error.log;",
    "    gzip on;",
    "    upstream app {",
    "        server 127.0.0.1:8080 max_fails=3 fail_timeout=10s;",
    "    }",
    "    server {",
    "        listen 443 ssl http2;",
    "        server_name lab.example.internal;",
    "        location / { proxy_pass http://app; }",
    "    }",
    "}",
];

/// Process names for logs and process lists.
pub(super) const PROCS: &[&str] = &[
    "sshd", "nginx", "systemd", "cron", "dockerd", "postgres", "kernel", "sudo",
];
/// Entries of `/etc`.
pub(super) const FILES: &[&str] = &[
    "adduser.conf",
    "apt",
    "bash.bashrc",
    "cron.d",
    "default",
    "environment",
    "fstab",
    "group",
    "hostname",
    "hosts",
    "logrotate.d",
    "nginx",
    "passwd",
    "profile",
    "resolv.conf",
    "ssh",
    "sudoers",
    "systemd",
    "timezone",
];
/// Syslog message templates; every `{}` becomes a number.
pub(super) const MESSAGES: &[&str] = &[
    "Accepted publickey for admin from 10.0.0.{} port {} ssh2",
    "pam_unix(sshd:session): session opened for user admin(uid={}) by (uid=0)",
    "Started Session {} of User admin.",
    "Received disconnect from 10.0.0.{}: {}: disconnected by user",
    "GET /api/health HTTP/1.1 200 {} \"-\" \"kube-probe/1.{}\"",
    "connection reset by peer while reading upstream, client: 10.0.0.{}, port {}",
    "(root) CMD (run-parts --report /etc/cron.hourly) [{}:{}]",
    "worker process {} exited with code {}",
    "checkpoint complete: wrote {} buffers ({}.1%)",
];

/// Replaces every `{}` of `template` with a number (an octet after a dot).
pub(super) fn fill_numbers(template: &str, r: &mut Rng) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut parts = template.split("{}");
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for p in parts {
        // IP address octets stay octets.
        let n = if out.ends_with('.') {
            r.range(2, 254)
        } else {
            r.range(2, 60_000)
        };
        out.push_str(&n.to_string());
        out.push_str(p);
    }
    out
}

/// Clock text for session time `t` (the session starts at 09:41:00).
pub(super) fn clock_text(t_ms: u64) -> String {
    let s = 9 * 3600 + 41 * 60 + t_ms / 1000;
    format!(
        "Mon 23 Nov  {:02}:{:02}:{:02}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// Line `n` of the syslog shown by the pager; depends only on the seed and `n`.
pub(super) fn log_line(seed: u64, n: u64) -> String {
    let mut r = Rng::new(mix(seed ^ 0x0051_574c_4f47, n));
    let s = 7 * 3600 + n * 3 + r.below(3);
    let proc_ = r.pick(PROCS);
    let msg = fill_numbers(r.pick(MESSAGES), &mut r);
    format!(
        "Nov 23 {:02}:{:02}:{:02} lab-vnc {proc_}[{}]: {msg}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        r.range(300, 40_000)
    )
}
