# Sourced by the set-up and test scripts: strict mode, a trap that names the
# failing step, and the checkout's own tool directory first on PATH.
#
#   .tools/venv   Python venv: pytest, componentize-py, ziglang, wasm-tools
#   .tools/bin    links to compiled tools (wit-bindgen), kept in a cache by version
#
# Everything the tests need is installed into the checkout (or, for slow compiled
# tools, into a cache keyed by exact version), never into the user's Python.

set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
export PATH="$TOOLS/venv/bin:$TOOLS/bin:$PATH"
# The venv's Python runs every Python step, so a global pip install never counts.
PYTHON="$TOOLS/venv/bin/python"

STEP="start"
# step NAME: what the script is doing now; a failure names it.
step() {
  STEP="$1"
  echo "${0##*/}: $STEP"
}

on_error() {
  local rc=$? cmd=$BASH_COMMAND src=${BASH_SOURCE[1]:-$0} line=${BASH_LINENO[0]}
  src="$(realpath --relative-to="$REPO" "$src" 2>/dev/null || echo "$src")"
  echo "${0##*/}: FAILED at step '$STEP': \`$cmd\` exited with status $rc ($src:$line)" >&2
  exit "$rc"
}
trap on_error ERR

# as_root CMD...: run as root (sudo when not root), for Debian packages.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: installs the Debian packages that are missing.
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "  apt-get install ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# python_venv: creates .tools/venv unless it exists and works.
python_venv() {
  if ! "$PYTHON" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$PYTHON" -m pip install -q --disable-pip-version-check --upgrade pip
  fi
}

# pip_requirements FILE: installs a pinned requirements file into the venv,
# skipped when the venv was already installed from this very file.
pip_requirements() {
  python_venv
  local file="$1" stamp sum
  stamp="$TOOLS/venv/.installed-$(basename "$(dirname "$file")")-$(basename "$file")"
  sum="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" = "$sum" ]; then
    echo "  up to date: ${file#"$REPO/"}"
    return 0
  fi
  "$PYTHON" -m pip install -q --disable-pip-version-check -r "$file"
  echo "$sum" > "$stamp"
}

# cargo_tool CRATE VERSION BIN: a compiled tool in a cache outside the checkout
# keyed by its exact version (building it takes minutes), linked into .tools/bin.
# Works with an empty cache: it is then built into it.
cargo_tool() {
  local crate="$1" version="$2" bin="$3"
  local cache="${WASMFTPD_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmftpd-tools}/$crate-$version"
  if [ ! -x "$cache/bin/$bin" ]; then
    echo "  cargo install $crate@$version (not cached yet; takes minutes)"
    rm -rf "$cache.partial"
    cargo install -q --locked --root "$cache.partial" "$crate@$version"
    rm -rf "$cache"
    mv "$cache.partial" "$cache"
  fi
  mkdir -p "$TOOLS/bin"
  ln -sfn "$cache/bin/$bin" "$TOOLS/bin/$bin"
}
