#!/usr/bin/env bash
# Issue 15's language target: every auth plugin's logins/s against auth-static's,
# on the same hash, with a fresh instance per login (the default) and with warm
# instances (a site's `reuse_instances = true`). Rounds are interleaved (each
# round times every case once) and the medians are compared, so a load that
# comes and goes hits every case alike.
#
#   bash examples/plugins/auth-ratios.sh [WASMFTPD]   (default: target/release/wasmftpd)
#   ROUNDS=5 LOGINS=200                                 (environment, defaults shown)
#
# Each case compiles its plugin cold first (`plugin bench` times that too): the
# default run takes ~15 minutes on 2 cores.
# Builds the example plugins first (cached). Results: docs/benchmarks.md,
# "Plugins by language".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-$repo/target/release/wasmftpd}"
plugins="$repo/target/example-plugins"
rounds="${ROUNDS:-5}"
logins="${LOGINS:-200}"
bash "$here/build.sh" "$plugins" >/dev/null
export RUST_LOG=warn

users="$(mktemp -d)"
times="$users/times.tsv"
trap 'rm -rf "$users"' EXIT
sha512="$(openssl passwd -6 -stdin <<<'bench pw')"
sha256="$(openssl passwd -5 -stdin <<<'bench pw')"

# One case: HASH-NAME LANGUAGE plugin arguments...; appends "hash lang mode ms".
measure() {
  local hash="$1" lang="$2" mode="$3"
  shift 3
  local reuse=()
  [ "$mode" = fresh ] || reuse=(--reuse-instances)
  local line
  line="$("$bin" plugin bench "$@" --login 'u:bench pw' --logins "$logins" "${reuse[@]}" |
    grep '^login (instantiate + check)')"
  # "login (instantiate + check): 1.7 ms each, 588/s on one core": the rate has
  # more digits than the time.
  python3 -c 'import re, sys; print(1000 / float(re.search(r"(\d+)/s", sys.argv[1]).group(1)))' \
    "$line" | sed "s/^/$hash\t$lang\t$mode\t/" >>"$times"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$rounds"); do
  for mode in fresh reused; do
    for hash in sha512 sha256; do
      h="${!hash}"
      echo "u:$h" >"$users/passwd"
      measure "$hash" rust "$mode" --auth builtin:auth-static --config "users.u.password=$h"
      measure "$hash" python "$mode" --auth "$plugins/auth-passwd.wasm" --dir "/=$users"
      measure "$hash" javascript "$mode" --auth "$plugins/auth-rules.wasm" --config "users.u.password=$h"
      measure "$hash" c "$mode" --auth "$plugins/auth-htpasswd.wasm" --dir "/=$users" --config file=/passwd
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$times" "$rounds" "$logins" <<'EOF'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
median = {}
for key in {tuple(r[:3]) for r in rows}:
    median[key] = statistics.median(float(r[3]) for r in rows if tuple(r[:3]) == key)
print(f"\nms per login, median of {sys.argv[2]} rounds of {sys.argv[3]} logins; "
      "ratio = logins/s against auth-static in the same mode (target >= 1/1.2 = 0.83)\n")
print("| hash | plugin | fresh instance | ratio | reused instances | ratio |")
print("|---|---|---:|---:|---:|---:|")
for hash in ("sha512", "sha256"):
    for lang in ("rust", "python", "javascript", "c"):
        cells = []
        for mode in ("fresh", "reused"):
            ms = median[(hash, lang, mode)]
            cells += [f"{ms:.2f}", f"{median[(hash, 'rust', mode)] / ms:.2f}"]
        print(f"| {hash} | {lang} | " + " | ".join(cells) + " |")
EOF
