//! A `psmgate serve` process with one web target (`console`, the origin on 127.0.0.1, with the
//! console's mask selector and pattern), a `tunnel` rule for 127.0.0.2, the origin's CA as an
//! extra root, access grants, the gateway CA and the sealed recording. The web session's video
//! is off: the bench measures the proxy and its DOM recording (the renderer is measured by
//! `tests/tests/web_video.rs`). The bench plays the in-page recorder of a few pages only, not of
//! the thousands it loads: hence the long heartbeat timeout.

use crate::console::{MASK_PATTERN, MASK_SELECTOR};
use crate::vnc_gateway::{
    cli, grant_retrying, serve_log_tail, spawn_serve, stop_gracefully, wait_listening,
};
use anyhow::{bail, Context, Result};
use psmgate_e2e::peers::free_port;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The gateway user every bench request runs as.
pub const USER: &str = "alice";
/// The web target.
pub const TARGET: &str = "console";
/// The id of the web rule that passes 127.0.0.2 through.
pub const TUNNEL_RULE: &str = "tunnelled-host";

/// A running `psmgate serve --no-tls`, stopped on drop.
pub struct Gateway {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The web proxy's port on 127.0.0.1.
    pub web_port: u16,
}

impl Gateway {
    /// Writes the configuration (origin at `https://127.0.0.1:{origin_port}/`, its CA in
    /// `origin_ca_pem`), starts the gateway and waits until its web proxy accepts connections.
    pub fn start(origin_port: u16, origin_ca_pem: &str) -> Result<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("psmgate-web-bench-")
            .tempdir()?;
        let (admin_port, web_port) = (free_port()?, free_port()?);
        let ca = dir.path().join("origin-ca.pem");
        std::fs::write(&ca, origin_ca_pem)?;
        let text = format!(
            "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             admin_tls = false\nvnc_listen = \"127.0.0.1:0\"\nrdp_listen = \"127.0.0.1:0\"\n\
             web_listen = \"127.0.0.1:{web_port}\"\n\n\
             [users.{USER}]\nroles = [\"admin\"]\n\n\
             [targets.{TARGET}]\nprotocol = \"web\"\naddress = \"https://127.0.0.1:{origin_port}/\"\n\
             domains = [\"127.0.0.1\"]\nmask_selectors = [\"{MASK_SELECTOR}\"]\n\
             mask_patterns = [\"{MASK_PATTERN}\"]\n\n\
             [web]\nextra_roots = [\"{ca}\"]\n\
             heartbeat_timeout = \"24h\"\nvideo = \"off\"\n\n\
             [[web_rules]]\nid = \"{TUNNEL_RULE}\"\ndomains = [\"127.0.0.2\"]\naction = \"tunnel\"\n\n\
             [[rules]]\nid = \"bench\"\nusers = [\"{USER}\"]\ntargets = \"*\"\n",
            ca = ca.display()
        );
        let (child, config) = spawn_serve(dir.path(), &text)?;
        let mut gw = Gateway {
            child: Some(child),
            dir,
            config,
            web_port,
        };
        if let Some(child) = gw.child.as_mut() {
            wait_listening(child, gw.dir.path(), web_port)?;
        }
        Ok(gw)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The last `n` lines of the gateway's log.
    pub fn log_tail(&self, n: usize) -> String {
        serve_log_tail(self.dir.path(), n)
    }

    /// Runs a `psmgate` subcommand against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        cli(&self.config, args)
    }

    /// Issues an access token for the web target (several uses, 2 hours).
    pub fn grant(&self) -> Result<String> {
        // `serve` opens the token database after binding its listeners: retry a racing grant.
        grant_retrying(&self.config, USER, TARGET)
    }

    /// The gateway CA's certificate (`psmgate ca export`), PEM.
    pub fn ca_pem(&self) -> Result<String> {
        let o = self.cli(&["ca", "export"])?;
        if !o.status.success() {
            bail!(
                "psmgate ca export failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Stops the gateway with SIGTERM (it seals the web session), then returns the sealed
    /// recording folders (waiting up to `timeout` for one).
    pub fn stop_and_collect(&mut self, timeout: Duration) -> Vec<PathBuf> {
        if let Some(child) = self.child.take() {
            stop_gracefully(child);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let recs = psmgate_e2e::recordings(&self.data());
            if recs.iter().any(|r| r.join("manifest.json").exists()) || Instant::now() >= deadline {
                return recs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `psmgate verify` of the recording folder `rec` (the gateway may be stopped).
    pub fn verify(&self, rec: &Path) -> Result<()> {
        let id = rec
            .file_name()
            .and_then(|f| f.to_str())
            .context("recording folder name")?;
        let o = self.cli(&["verify", id])?;
        if !o.status.success() {
            bail!(
                "psmgate verify {id} failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_gracefully(child);
        }
    }
}

/// Every event of the sealed recording `rec`, in order, with the bytes of its transcript line
/// (newline included).
pub fn transcript(rec: &Path) -> Result<Vec<(serde_json::Value, usize)>> {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rec.join("manifest.json"))
            .with_context(|| format!("{} is not sealed", rec.display()))?,
    )?;
    let mut out = Vec::new();
    for file in manifest["events"].as_array().into_iter().flatten() {
        let name = file.as_str().context("manifest events entry")?;
        let text = std::fs::read_to_string(rec.join(name))
            .with_context(|| format!("reading {}", rec.join(name).display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let e: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("a transcript line of {name}"))?;
            out.push((e, line.len() + 1));
        }
    }
    Ok(out)
}
