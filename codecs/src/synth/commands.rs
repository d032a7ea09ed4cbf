//! The commands typed in the terminal and their output.

use super::content::{log_line, FILES, PROCS};
use super::rng::Rng;

/// Commands typed in the terminal, by index. The standard workload picks among the first
/// [`STANDARD_COMMANDS`]; the others only appear in the demo tour.
pub(super) const COMMANDS: &[&str] = &[
    "sudo systemctl status nginx",
    "journalctl -u sshd --since today",
    "ls -la /etc",
    "df -h",
    "tail -n 20 /var/log/auth.log",
    "ps aux --sort=-%cpu | head",
    "ip addr show eth0",
    "cat /etc/os-release",
    "free -m",
    "sudo ss -tlnp",
    "grep -i error /var/log/nginx/error.log",
    "uptime",
    "sudo apt list --upgradable",
    "docker ps",
    "sudo tail -f /var/log/syslog",
    "uname -a",
];

/// How many of [`COMMANDS`] the standard workload picks from (stable: benchmarks compare on it).
pub(super) const STANDARD_COMMANDS: usize = 15;

/// The commands of the demo tour's typing blocks, in order (indices into [`COMMANDS`]): short
/// ones first, so that even a short tour shows two complete commands with their output.
pub(super) const TOUR_SCRIPT: &[usize] = &[UNAME, 3, 0, 8, 6, 11, 13, 4, 2, 9];

/// Index of `uname -a`, which prints a single line.
const UNAME: usize = 15;

/// How many output lines command `cmd` prints, given a drawn count of 3 to 15.
pub(super) fn output_len(cmd: usize, drawn: u64) -> u64 {
    match cmd {
        UNAME => 1,
        _ => drawn,
    }
}

/// Output line `i` of command `cmd` (an index into [`COMMANDS`]; [`UNAME`] and beyond print
/// the `uname -a` line).
pub(super) fn output_line(cmd: usize, i: u64, r: &mut Rng) -> String {
    match cmd {
        0 => match i {
            0 => "* nginx.service - A high performance web server and a reverse proxy server".into(),
            1 => "     Loaded: loaded (/lib/systemd/system/nginx.service; enabled; preset: enabled)".into(),
            2 => format!("     Active: active (running) since Mon 2026-11-23 06:{:02}:12 UTC; 3h ago", r.below(60)),
            3 => format!("   Main PID: {} (nginx)", r.range(400, 9000)),
            4 => format!("      Tasks: {} (limit: 4557)", r.range(2, 9)),
            5 => format!("     Memory: {}.{}M", r.range(4, 40), r.below(10)),
            _ => format!("             |-{} \"nginx: worker process\"", r.range(400, 9000)),
        },
        1 | 4 | 10 | 14 => log_line(r.next_u64(), i),
        2 => {
            let name = r.pick(FILES);
            let dir = r.below(3) == 0;
            format!(
                "{} {:>2} root root {:>6} Nov {:>2} {:02}:{:02} {name}",
                if dir { "drwxr-xr-x" } else { "-rw-r--r--" },
                r.range(1, 9),
                if dir { 4096 } else { r.range(12, 9000) },
                r.range(1, 23),
                r.below(24),
                r.below(60)
            )
        }
        3 => {
            let size = r.range(8, 500);
            let used = r.below(size);
            format!(
                "/dev/sda{}       {size:>4}G {used:>4}G {:>4}G {:>3}% /{}",
                r.range(1, 4),
                size - used,
                used * 100 / size.max(1),
                ["", "var", "home", "srv"][i as usize % 4]
            )
        }
        5 => format!(
            "{:<8} {:>6} {:>4}.{} {:>4}.{} {:>7} ?  Ss  09:{:02}   0:{:02} /usr/sbin/{}",
            if r.below(3) == 0 { "www-data" } else { "root" },
            r.range(1, 30_000),
            r.below(40),
            r.below(10),
            r.below(9),
            r.below(10),
            r.range(1000, 900_000),
            r.below(60),
            r.below(60),
            r.pick(PROCS)
        ),
        6 => format!(
            "    inet 10.0.{}.{}/24 brd 10.0.0.255 scope global eth0  valid_lft forever",
            r.below(4),
            r.range(2, 250)
        ),
        7 => ["PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"", "NAME=\"Debian GNU/Linux\"", "VERSION_ID=\"12\"", "ID=debian"]
            [i as usize % 4]
            .into(),
        8 => format!(
            "Mem:  {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
            15_883,
            r.range(800, 9000),
            r.range(500, 5000),
            r.below(400),
            r.range(1000, 9000),
            r.range(4000, 14_000)
        ),
        9 => format!(
            "LISTEN 0  511  0.0.0.0:{:<5}  0.0.0.0:*  users:((\"{}\",pid={},fd={}))",
            [22, 80, 443, 5432, 8080][i as usize % 5],
            r.pick(PROCS),
            r.range(300, 9000),
            r.range(3, 20)
        ),
        11 => format!(
            " 09:{:02}:{:02} up 3 days, {}:{:02},  2 users,  load average: 0.{:02}, 0.{:02}, 0.{:02}",
            r.below(60),
            r.below(60),
            r.below(24),
            r.below(60),
            r.below(100),
            r.below(100),
            r.below(100)
        ),
        12 => format!(
            "{}/bookworm-security 1.{}.{}-{}+deb12u{} amd64 [upgradable from: 1.{}.{}]",
            ["openssl", "libssl3", "curl", "linux-image-amd64", "sudo"][i as usize % 5],
            r.below(30),
            r.below(9),
            r.range(1, 5),
            r.range(1, 9),
            r.below(30),
            r.below(9)
        ),
        13 => format!(
            "{:012x}   registry.local/app:{}.{}   \"/entrypoint.sh\"   {} hours ago   Up {} hours   0.0.0.0:{}->80/tcp",
            r.next_u64() >> 16,
            r.below(5),
            r.below(20),
            r.range(1, 48),
            r.range(1, 48),
            r.range(8000, 9000)
        ),
        _ => format!(
            "Linux lab-vnc 6.1.0-{}-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.{}-1 (2026-10-{:02}) x86_64 GNU/Linux",
            r.range(20, 28),
            r.range(100, 130),
            r.range(1, 28)
        ),
    }
}
