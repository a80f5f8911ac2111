#!/usr/bin/env bash
# Where wasmftpd's CPU goes in one benchmark case (issue 15's "profile that shows
# it"): starts a release wasmftpd on loopback (auth-static with a SHA-512-crypt
# password, storage-fs on tmpfs, as bench/compare.sh does), runs one client case
# under `perf record -e cpu-clock` (a software clock: works where hardware
# counters are not exposed, as in this VM), and prints the server's hottest
# symbols (user and kernel) and a summary by area.
#
# Usage (as root): bench/profile.sh CASE
#   CASE: stor   curl -T of SIZE bytes (default 1 GiB), twice
#         small  bench/clients.py small: 1,000 x 4 KiB STOR+RETR+DELE, Python ftplib
#         login  bench/clients.py login: 8 processes, connect + USER/PASS + QUIT, 5 s
# Environment: WASMFTPD (default target/release/wasmftpd), SIZE, TOP (default 40),
#   STORAGE_CONFIG (TOML lines under [site.bench.storage.config]), PASS_LEN (12),
#   TOOL=strace: count the server's system calls (`strace -c -f`, all threads)
#   instead of sampling its CPU.
# Needs perf (Debian's linux-perf) or strace; installed when missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
CASE=${1:?usage: bench/profile.sh stor|small|login}
WASMFTPD=${WASMFTPD:-$REPO/target/release/wasmftpd}
SIZE=${SIZE:-1073741824}
TOP=${TOP:-40}
PASS_LEN=${PASS_LEN:-12}
TOOL=${TOOL:-perf}
case $TOOL in
    perf) command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >&2 ;;
    strace) command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >&2 ;;
    *) echo "profile.sh: TOOL is perf or strace" >&2; exit 2 ;;
esac
[ -x "$WASMFTPD" ] || { echo "profile.sh: no binary at $WASMFTPD (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d /dev/shm/wasmftpd-profile.XXXXXX)
PID=""
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/root"
PASS=$(head -c 64 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9' | head -c "$PASS_LEN")
HASH=$(openssl passwd -6 "$PASS")
cat >"$WORK/wasmftpd.toml" <<EOF
[server]
listen = ["127.0.0.1:0"]
passive_ports = "49000-49999"
login_failure_delay = "0s"
max_connections = 2000
max_connections_per_ip = 2000

[site.bench]
[site.bench.auth]
plugin = "builtin:auth-static"
[site.bench.auth.config.users.bench]
password = "$HASH"
home = "/"
[site.bench.storage]
plugin = "builtin:storage-fs"
[site.bench.storage.dirs]
"/" = "$WORK/root"
[site.bench.storage.config]
${STORAGE_CONFIG:-}
EOF
NO_COLOR=1 "$WASMFTPD" serve --config "$WORK/wasmftpd.toml" >"$WORK/server.log" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 100); do
    PORT=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 | sed 's/.*://' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/server.log" >&2; exit 1; }

# Made before the profile starts, outside the config's directory (the server
# watches that one for config changes).
[ "$CASE" != stor ] || head -c "$SIZE" /dev/zero >"$WORK/root/big.bin"

run_case() {
    case $CASE in
        stor)
            for i in 1 2; do
                curl -sS -u "bench:$PASS" -T "$WORK/root/big.bin" "ftp://127.0.0.1:$PORT/up$i.bin"
            done ;;
        small) python3 "$HERE/clients.py" small --port "$PORT" --user bench --pass "$PASS" ;;
        login) python3 "$HERE/clients.py" login --port "$PORT" --user bench --pass "$PASS" ;;
        *) echo "profile.sh: unknown case $CASE" >&2; exit 2 ;;
    esac
}

if [ "$TOOL" = strace ]; then
    strace -c -f -p "$PID" -o "$WORK/strace.txt" 2>/dev/null &
    TRACER=$!
    sleep 0.5
    run_case >&2
    kill -INT "$TRACER"
    wait "$TRACER" || true
    echo "# wasmftpd, case $CASE: system calls of all its threads (strace -c -f)"
    cat "$WORK/strace.txt"
    exit 0
fi

perf record -q -e cpu-clock -F 2000 -p "$PID" -o "$WORK/perf.data" >/dev/null 2>&1 &
PERF=$!
sleep 0.5
run_case >&2
kill -INT "$PERF"
wait "$PERF" || true

echo "# wasmftpd, case $CASE: hottest symbols (share of the server's CPU samples)"
perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -n "$TOP" || true
echo
echo "# by area"
perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -n 10 || true
