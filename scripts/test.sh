#!/usr/bin/env bash
# Runs the whole psmgate test suite: installs what it needs, checks formatting and lints,
# runs the Rust tests (unit, integration, end-to-end with real peers) and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

FEATURES="psmgate-codecs/svt-av1,psmgate/svt-av1,psmgate-e2e/svt-av1"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features "$FEATURES" -- -D warnings
cargo build --workspace --features "$FEATURES"
cargo test --workspace --features "$FEATURES"

export PSMGATE_BIN="$PWD/target/debug/psmgate"
(cd tests/player && node --test)
(cd tests/web && node --test)
