#!/usr/bin/env bash
# Builds psmgate, records a demo session on embedded defaults (./psmgate-data: local disk,
# SQLite index, generated signing key and TLS certificate) and serves the player.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --build
cargo build --release -p psmgate --features svt-av1
exec target/release/psmgate serve --demo "$@"
