#!/usr/bin/env bash
# Runs every test: installs what they need (scripts/setup.sh), then the Rust unit
# and integration tests (the host workspace, then the plugins' native unit
# tests), then the end-to-end tests that drive the real binary
# with ftplib, curl and lftp over loopback.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

bash scripts/setup.sh

step "cargo build"
cargo build -j2 --bins

step "cargo test"
cargo test -j2 --workspace

step "plugin unit tests (native)"
# The plugins workspace builds for wasm32-wasip2, where test binaries cannot
# run; the crates with unit tests (pure parsing, signing and mapping code) are
# tested on the host target instead. The other plugins are thin bindings that
# the end-to-end tests cover. Built under the root target/, like everything
# else the tests build.
cargo test -j2 --manifest-path plugins/Cargo.toml -p plugin-common -p storage-s3 \
  --target-dir target/plugins-native

step "end-to-end tests (pytest)"
# A temporary directory of this checkout's own: pytest prunes old numbered
# directories under its shared default, so two checkouts testing at once
# (several worktrees on one machine) would delete each other's files.
"$PYTHON" -m pytest -q --basetemp="/tmp/wasmftpd-pytest-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)" tests/
