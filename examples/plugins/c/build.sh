#!/usr/bin/env bash
# Builds the C example plugins:   bash build.sh OUT_DIR
#   ->   OUT_DIR/storage-dir.wasm (storage-plugin world), OUT_DIR/notify.wasm (event-plugin world),
#        OUT_DIR/auth-htpasswd.wasm (auth-plugin world)
#
# For each plugin:
# 1. wit-bindgen 0.61.1 writes C bindings for its world of wit/plugin.wit (contract 0.2);
# 2. zig 0.17.1 (PyPI `ziglang`) compiles a wasm32-wasi reactor module with its
#    wasi-libc (the first build compiles that libc, ~20 s; then it is cached);
# 3. wasm-tools wraps the module into a component, with the WASI preview1
#    reactor adapter that matches wasmtime 48 for the libc's preview1 calls.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="$1"

# The adapter's major version must equal the server's wasmtime: the crate pins it.
(cd "$here/adapter" && cargo fetch -q)
adapter="$(cd "$here/adapter" && cargo metadata -q --format-version 1 | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
pkg = next(p for p in meta["packages"] if p["name"] == "wasi-preview1-component-adapter-provider")
print(os.path.join(os.path.dirname(pkg["manifest_path"]), "artefacts", "wasi_snapshot_preview1.reactor.wasm"))')"

build() {  # build NAME WORLD SOURCE
  local name="$1" world="$2" source="$3" bindings="${2//-/_}"
  local work="$out/.c-build/$name"
  rm -rf "$work" && mkdir -p "$work"
  wit-bindgen c "$wit" --world "wasmftpd:plugin/$world" --out-dir "$work" >"$work/wit-bindgen.log" 2>&1 ||
    { cat "$work/wit-bindgen.log" >&2; exit 1; }
  python3 -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -s -Wall -Wextra -Werror \
    -I "$work" "$here/$source" "$work/$bindings.c" "$work/${bindings}_component_type.o" \
    -o "$work/$name.core.wasm"
  wasm-tools component new "$work/$name.core.wasm" \
    --adapt "wasi_snapshot_preview1=$adapter" -o "$out/$name.wasm"
  wasm-tools validate "$out/$name.wasm"
}

build storage-dir storage-plugin storage-dir/storage_dir.c
build notify event-plugin notify/notify.c
build auth-htpasswd auth-plugin auth-htpasswd/auth_htpasswd.c
