//! psmgate: privileged-session recording gateway.
//!
//! This crate holds the protocol-independent gateway: the per-session [`recording::Recorder`]
//! every proxy records through, the data store ([`store`]), the admin/player HTTPS server
//! ([`admin`]), exports ([`export`]), the demo source ([`demo`]) and the benchmark ([`bench`]).
//! The `psmgate` binary (src/main.rs) is a thin command-line layer over these.

pub mod access;
pub mod admin;
pub mod assets;
pub mod bench;
pub mod demo;
pub mod export;
pub mod live;
pub mod metrics;
pub mod policy_cell;
pub mod rdp;
pub mod rdp_gateway;
pub mod recording;
pub mod report;
pub mod settings;
pub mod siem;
pub mod store;
pub mod supervisor;
pub mod tls;
pub mod vnc;
pub mod vnc_gateway;
pub mod vnc_handshake;
pub mod web;
