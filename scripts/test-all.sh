#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, then the end-to-end
# tests that drive the real binary with ftplib, curl and lftp over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -j2 --bins
cargo test -j2 --workspace
python3 -m pytest -q tests/
