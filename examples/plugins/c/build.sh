#!/usr/bin/env bash
# Builds the C example plugin:   bash build.sh OUT_DIR   ->   OUT_DIR/storage-dir.wasm
#
# 1. wit-bindgen 0.61.1 writes C bindings for the storage-plugin world;
# 2. zig 0.17.1 (PyPI `ziglang`) compiles a wasm32-wasi reactor module with its
#    wasi-libc (the first build compiles that libc, ~20 s; then it is cached);
# 3. wasm-tools wraps the module into a component, with the WASI preview1
#    reactor adapter that matches wasmtime 48 for the libc's preview1 calls.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit/legacy/0.1.0"
out="$1"
work="$out/.c-build"
rm -rf "$work" && mkdir -p "$work"

wit-bindgen c "$wit" --world wasmftpd:plugin/storage-plugin --out-dir "$work" >"$work/wit-bindgen.log" 2>&1 ||
  { cat "$work/wit-bindgen.log" >&2; exit 1; }

python3 -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -s -Wall -Wextra -Werror \
  -I "$work" "$here/storage-dir/storage_dir.c" "$work/storage_plugin.c" \
  "$work/storage_plugin_component_type.o" -o "$work/storage-dir.core.wasm"

# The adapter's major version must equal the server's wasmtime: the crate pins it.
(cd "$here/adapter" && cargo fetch -q)
adapter="$(cd "$here/adapter" && cargo metadata -q --format-version 1 | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
pkg = next(p for p in meta["packages"] if p["name"] == "wasi-preview1-component-adapter-provider")
print(os.path.join(os.path.dirname(pkg["manifest_path"]), "artefacts", "wasi_snapshot_preview1.reactor.wasm"))')"

wasm-tools component new "$work/storage-dir.core.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$out/storage-dir.wasm"
wasm-tools validate "$out/storage-dir.wasm"
