#!/usr/bin/env bash
# Installs what the build and the tests need, each step skipped when it is
# already done, so it works on a fresh machine and on one that has everything:
#   - the wasm32-wasip2 Rust target (rustup)
#   - curl, lftp, openssl (Debian)
#   - pytest in the checkout's Python venv, .tools/venv (tests/requirements.txt)
#   - the example plugins' toolchains (examples/plugins/toolchains.sh)
# A failing step is named on stderr (scripts/lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "Rust target wasm32-wasip2"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

step "Debian packages (curl, lftp, openssl)"
apt_install curl lftp openssl

step "Python test tools into .tools/venv"
pip_requirements "$REPO/tests/requirements.txt"

step "example plugin toolchains"
bash "$REPO/examples/plugins/toolchains.sh"
