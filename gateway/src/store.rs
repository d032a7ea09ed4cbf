//! The gateway's data folder: recordings backend, signing key, index, admin credentials.
//!
//! Layout below `data_dir`:
//! ```text
//! recordings/            storage backend root (YYYY/MM/DD/<session-id>/…, audit.jsonl)
//! keys/gateway.ed25519   gateway signing key (0600), generated on first start
//! index.sqlite3          recordings index
//! access.sqlite3         access tokens (0600)
//! tls/                   admin listener certificate (generated if absent)
//! admin-token            bearer token for the admin API and player (0600)
//! ```

use anyhow::{Context, Result};
use psmgate_policy::Config;
use psmgate_storage::audit::SharedAuditLog;
use psmgate_storage::backend::{Backend, LocalBackend};
use psmgate_storage::index::{Index, SqliteIndex};
use psmgate_storage::keys::GatewayKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open handles on the data folder.
#[derive(Clone)]
pub struct Store {
    /// The data folder.
    pub data_dir: PathBuf,
    /// Recordings storage.
    pub backend: Arc<dyn Backend>,
    /// Gateway signing key.
    pub key: Arc<GatewayKey>,
    /// Recordings index.
    pub index: Arc<dyn Index>,
    /// The sessions running in this process (listed and ended through the admin API).
    pub live: Arc<crate::live::LiveSessions>,
    /// The audit log (`recordings/audit.jsonl`), entries signed with the gateway key. Every
    /// writer in the process goes through this one instance.
    pub audit: Arc<SharedAuditLog>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating on first use) the data folder named by `config` or `override_dir`.
    pub fn open(config: &Config, override_dir: Option<&Path>) -> Result<Store> {
        let data_dir = override_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| config.data_dir());
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data folder {}", data_dir.display()))?;
        let backend = Arc::new(
            LocalBackend::new(data_dir.join("recordings"))
                .with_context(|| format!("opening {}", data_dir.join("recordings").display()))?,
        );
        std::fs::create_dir_all(data_dir.join("keys"))?;
        let key = GatewayKey::load_or_generate(&data_dir.join("keys").join("gateway.ed25519"))
            .context("loading the gateway signing key")?;
        let index =
            SqliteIndex::open(&data_dir.join("index.sqlite3")).context("opening the index")?;
        let key = Arc::new(key);
        let audit = SharedAuditLog::open_signed(backend.clone(), key.clone())
            .context("opening the audit log")?;
        Ok(Store {
            data_dir,
            backend,
            key,
            audit: Arc::new(audit),
            index: Arc::new(index),
            live: crate::live::LiveSessions::new(),
        })
    }

    /// Seals recordings left unsealed by a crash, as `interrupted`, and indexes them. Then, in
    /// a background thread, makes every sealed recording whose text the index lacks searchable
    /// (these recovered ones, recordings made before search existed or by `psmgate demo`, and
    /// any whose indexing failed): after an upgrade that can be many, and startup does not wait.
    pub fn recover(&self) -> Result<usize> {
        let outcomes = psmgate_storage::recovery::recover_all(&self.backend, &self.key)
            .context("recovering unsealed recordings")?;
        let mut n = 0;
        for (dir, outcome) in outcomes {
            match outcome {
                Ok(r) => {
                    let Some(manifest) = r.manifest else { continue };
                    if r.action == psmgate_storage::recovery::RecoveryAction::NothingToDo {
                        continue;
                    }
                    tracing::warn!(dir = %dir, records = r.records, action = ?r.action, "recovered an unsealed recording");
                    let bytes = manifest.segment_bytes();
                    self.index
                        .upsert(&psmgate_storage::index::SessionRow::from_manifest(
                            &manifest,
                            &dir,
                            bytes,
                            time::OffsetDateTime::now_utc(),
                        ))?;
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(dir = %dir, error = %e, "could not recover a recording; left untouched")
                }
            }
        }
        let (backend, index) = (self.backend.clone(), self.index.clone());
        let backfill = std::thread::Builder::new()
            .name("search-backfill".into())
            .spawn(move || {
                match psmgate_storage::search::index_missing(backend.as_ref(), index.as_ref()) {
                    Ok(done) if done.indexed + done.failed > 0 => tracing::info!(
                        indexed = done.indexed,
                        failed = done.failed,
                        "made recordings searchable"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not list recordings to make searchable")
                    }
                }
            });
        if let Err(e) = backfill {
            tracing::warn!(error = %e, "could not start indexing recordings' text");
        }
        Ok(n)
    }

    /// Finds a recording folder by session id or by path (absolute or below the backend root).
    pub fn resolve_recording(&self, id_or_dir: &str) -> Result<String> {
        if let Ok(Some(row)) = self.index.get(id_or_dir) {
            return Ok(row.dir);
        }
        if let Some(dir) = psmgate_storage::layout::find_recording(self.backend.as_ref(), id_or_dir)
            .context("searching recordings")?
        {
            return Ok(dir);
        }
        anyhow::bail!("no recording with id {id_or_dir}")
    }

    /// The access-token store (`access.sqlite3`, mode 0600: VNC authentication is a
    /// challenge-response over the shared secret, so the gateway holds the tokens themselves).
    pub fn tokens(&self) -> Result<psmgate_storage::tokens::TokenStore> {
        let path = self.data_dir.join("access.sqlite3");
        psmgate_storage::tokens::TokenStore::open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// The admin bearer token, generated on first use.
    pub fn admin_token(&self) -> Result<String> {
        let path = self.data_dir.join("admin-token");
        if let Ok(t) = std::fs::read_to_string(&path) {
            return Ok(t.trim().to_string());
        }
        let mut raw = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        let token = hex::encode(raw);
        crate::tls::write_private(&path, token.as_bytes())?;
        Ok(token)
    }
}
