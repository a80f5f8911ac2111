#!/usr/bin/env bash
# Runs every test: installs what they need (scripts/setup.sh), then the Rust unit
# and integration tests, then the end-to-end tests that drive the real binary
# with ftplib, curl and lftp over loopback.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

bash scripts/setup.sh

step "cargo build"
cargo build -j2 --bins

step "cargo test"
cargo test -j2 --workspace

step "end-to-end tests (pytest)"
"$PYTHON" -m pytest -q tests/
