#!/usr/bin/env bash
# Builds every example plugin into OUT_DIR (default: target/example-plugins):
#
#   python/      auth-passwd.wasm, storage-quota.wasm   (componentize-py)
#   javascript/  auth-rules.wasm                        (componentize-js)
#   c/           storage-dir.wasm, notify.wasm,         (wit-bindgen C + zig cc)
#                auth-htpasswd.wasm
#
# Installs missing toolchains first (toolchains.sh). A language whose sources,
# the WIT and this script are unchanged since its last build is skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$REPO/examples/plugins"
repo="$REPO"
out="$(mkdir -p "${1:-$repo/target/example-plugins}" && cd "${1:-$repo/target/example-plugins}" && pwd)"

bash "$here/toolchains.sh"

# The fingerprint of what a language's plugins are built from.
fingerprint() {
  (
    cd "$repo"
    find "examples/plugins/$1" wit examples/plugins/build.sh examples/plugins/toolchains.sh examples/plugins/requirements.txt -type f \
      -not -path '*/node_modules/*' -not -path '*/__pycache__/*' -not -path '*/target/*' -print0 |
      sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

build() {  # build LANGUAGE OUTPUT...
  local lang="$1"; shift
  local stamp="$out/.$lang.fingerprint" sum missing=0
  sum="$(fingerprint "$lang")"
  for f in "$@"; do [ -f "$out/$f" ] || missing=1; done
  if [ "$missing" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    echo "example plugins: $lang is up to date"
    return
  fi
  local started=$SECONDS
  step "build the $lang example plugins"
  bash "$here/$lang/build.sh" "$out"
  echo "$sum" > "$stamp"
  echo "example plugins: built $lang in $((SECONDS - started)) s"
}

build c storage-dir.wasm notify.wasm auth-htpasswd.wasm
build python auth-passwd.wasm storage-quota.wasm
build javascript auth-rules.wasm
