#!/usr/bin/env bash
# Builds the JavaScript example plugins with componentize-js 0.23.0 (its JS API,
# see build.mjs):   bash build.sh OUT_DIR   ->   OUT_DIR/auth-rules.wasm
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# toolchains.sh installs node_modules from package-lock.json.
[ -d "$here/node_modules" ] || bash "$here/../toolchains.sh"
node "$here/build.mjs" "$1"
