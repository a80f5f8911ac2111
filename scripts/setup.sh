#!/usr/bin/env bash
# Installs what the build and the tests need, skipping what is already there:
# the wasm32-wasip2 Rust target, curl, lftp and openssl (Debian), pytest (PyPI), and
# the example plugins' toolchains (examples/plugins/toolchains.sh).
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding Rust target wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

missing=()
for tool in curl lftp openssl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import pytest' >/dev/null 2>&1; then
  echo "setup: installing pytest"
  python3 -m pip install -q pytest
fi

# Toolchains for the example plugins in Python, JavaScript and C (versions pinned there).
bash "$(dirname "$0")/../examples/plugins/toolchains.sh"
