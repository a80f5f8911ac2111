#!/usr/bin/env bash
# Measures every example plugin and the builtins with `wasmftpd plugin bench`:
# size, cold compile, cached load, instantiation, time per login (auth, with a
# SHA-crypt hash of 5,000 rounds) or a 64 MiB read (storage).
#
#   bash examples/plugins/bench.sh [WASMFTPD]   (default: target/release/wasmftpd)
#
# Builds the example plugins first (cached). Results: docs/benchmarks.md,
# "Plugins by language".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-$repo/target/release/wasmftpd}"
plugins="$repo/target/example-plugins"
bash "$here/build.sh" "$plugins" >/dev/null
export RUST_LOG=warn

users="$(mktemp -d)"
trap 'rm -rf "$users"' EXIT
sha512="$(openssl passwd -6 -stdin <<<'bench pw')"
sha256="$(openssl passwd -5 -stdin <<<'bench pw')"
echo "u:$sha512" > "$users/passwd"

run() { echo "=== $1"; shift; "$bin" plugin bench "$@" | grep -v '^plugin:'; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# Each auth plugin twice: a fresh instance per login (the default) and warm
# instances reused across logins (a site's `reuse_instances = true`).
for reuse in "" --reuse-instances; do
  mode="${reuse:+, reused instances}"
  run "rust auth-static, SHA-512-crypt$mode" --auth builtin:auth-static --config "users.u.password=$sha512" --login 'u:bench pw' --logins 50 $reuse
  run "python auth-passwd, SHA-512-crypt$mode" --auth "$plugins/auth-passwd.wasm" --dir "/=$users" --login 'u:bench pw' --logins 50 $reuse
  run "c auth-htpasswd, SHA-512-crypt$mode" --auth "$plugins/auth-htpasswd.wasm" --dir "/=$users" --config file=/passwd --login 'u:bench pw' --logins 50 $reuse
  run "javascript auth-rules, SHA-512-crypt$mode" --auth "$plugins/auth-rules.wasm" --config "users.u.password=$sha512" --login 'u:bench pw' --logins 50 $reuse
  run "rust auth-static, SHA-256-crypt$mode" --auth builtin:auth-static --config "users.u.password=$sha256" --login 'u:bench pw' --logins 50 $reuse
  run "javascript auth-rules, SHA-256-crypt$mode" --auth "$plugins/auth-rules.wasm" --config "users.u.password=$sha256" --login 'u:bench pw' --logins 50 $reuse
done
run "rust storage-fs (stream)" --storage builtin:storage-fs
run "rust storage-fs (chunks)" --storage builtin:storage-fs --config data_path=chunks
run "c storage-dir (chunks)" --storage "$plugins/storage-dir.wasm"
run "python storage-quota (stream reads)" --storage "$plugins/storage-quota.wasm"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
