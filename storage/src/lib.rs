//! Recording storage for psmgate.
//!
//! This crate owns the on-disk contract described in `docs/recording-format.md`: the folder layout
//! of a recording, the append-only SHA-256 hash chain (`chain.jsonl`) with Ed25519-signed
//! checkpoints, the manifest, verification of a recording against tampering, crash recovery of
//! unsealed recordings, the session index and retention with a tamper-evident audit log.
//!
//! It knows nothing of pixels or protocols: callers hand it byte ranges (init segments, media
//! fragments, transcript batches) and it makes them durable and verifiable.
//!
//! Module map:
//! - [`backend`]: where bytes live ([`backend::Backend`], [`backend::LocalBackend`]).
//! - [`keys`]: the gateway signing key ([`keys::GatewayKey`]).
//! - [`chain`]: chain record types and head computation.
//! - [`manifest`]: the manifest document.
//! - [`layout`]: `YYYY/MM/DD/<session-id>` folders.
//! - [`writer`]: [`writer::RecordingWriter`], the only way a recording is written.
//! - [`verify`]: [`verify::verify`], the integrity check.
//! - [`recovery`]: sealing recordings left unsealed by a crash.
//! - [`index`]: the session index ([`index::Index`], [`index::SqliteIndex`]).
//! - [`search`]: the searchable text of a transcript and full-text queries over the index.
//! - [`audit`]: the hash-chained, optionally signed audit log of deletions, legal holds and
//!   administrative actions.
//! - [`retention`]: deleting expired recordings.
//! - [`tokens`]: access tokens issued to users ([`tokens::TokenStore`]).
//! - [`requests`]: just-in-time access requests and their approval (on the same store).
//! - [`logins`]: sign-in sessions of the web interface and API (on the same store).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod backend;
pub mod chain;
pub mod error;
pub mod index;
pub mod keys;
pub mod layout;
pub mod logins;
pub mod manifest;
pub mod recovery;
pub mod requests;
pub mod retention;
pub mod search;
mod sqlite;
pub mod tokens;
pub mod verify;
pub mod writer;

pub use error::{Error, Result};
