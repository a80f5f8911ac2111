#!/usr/bin/env bash
# Builds the Python example plugins with componentize-py 0.25.1:
#   bash build.sh OUT_DIR   ->   OUT_DIR/auth-passwd.wasm, OUT_DIR/storage-quota.wasm
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Both are built for contract 0.2 (wit/plugin.wit).
wit="$here/../../../wit"
out="$1"
cd "$here"
# Each plugin is a directory with an `app` module; the world decides which
# interface its class implements.
componentize-py -d "$wit" -w auth-plugin componentize -p auth_passwd app -o "$out/auth-passwd.wasm"
componentize-py -d "$wit" -d storage_quota/wit -w wasmftpd-examples:storage-quota/storage-quota \
  componentize -p storage_quota app -o "$out/storage-quota.wasm"
