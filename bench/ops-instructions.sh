#!/usr/bin/env bash
# What the operations features cost per operation, in instructions (issue 13:
# at most 3 % of a login's or a small file's cost), counted with valgrind's
# callgrind so the figure does not depend on what else runs on the machine.
#
# For each case the release server runs under callgrind: a few untimed
# operations warm it up, the counters are zeroed (callgrind_control -z), a
# fixed number of operations runs from a sequential Python client, and the
# counters are dumped (callgrind_control -d). Instructions of every server
# thread are counted, the transfer log's writer thread included (also the
# wasmtime epoch ticker's, ~100 wake-ups a second: a few hundred instructions
# per operation at callgrind's pace, far below the figures measured).
#
# Cases: SHA-512 logins (builtin auth-static, SHA-512-crypt hash), trivial-auth
# logins (auth-static's anonymous login: no hash), small files (one session;
# per file EPSV+STOR, EPSV+RETR, DELE of 4 KiB). Variants:
#   off  [server.ban] enabled = false, no admin listener, no transfer log
#   on   the defender on (its defaults), the admin listener, a JSON transfer log
# Metrics are counted in both (there is no switch for them); the `on` profile's
# ops functions show their share (OPS_SHARE=1 prints it).
#
# Usage: bench/ops-instructions.sh
# Environment: WASMFTPD=path [target/release/wasmftpd]; LOGINS=40 (SHA-512),
# TRIVIAL=200, FILES=100; CASES="sha512 trivial small"; VARIANTS="off on";
# ROUNDS=3 (medians over rounds: a variant's count moves by ~2 % from run to
# run with how the runtime's threads happen to park and wake, ops code or not);
# KEEP=dir (keep the last round's callgrind profiles there); OPS_SHARE=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
WASMFTPD=${WASMFTPD:-$REPO/target/release/wasmftpd}
LOGINS=${LOGINS:-40}
TRIVIAL=${TRIVIAL:-200}
FILES=${FILES:-100}
CASES=${CASES:-"sha512 trivial small"}
VARIANTS=${VARIANTS:-"off on"}
ROUNDS=${ROUNDS:-3}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 2; }
[ -x "$WASMFTPD" ] || { echo "no binary at $WASMFTPD (cargo build --release)" >&2; exit 2; }

# The full plugin pool reserves terabytes of address space; valgrind cannot.
export WASMFTPD_PLUGIN_POOL=${WASMFTPD_PLUGIN_POOL:-16}
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/root" "$WORK/cache"
PASS=bench-pw1234
# A fixed salt: every run hashes the same way.
HASH=$(openssl passwd -6 -salt opsinstructions "$PASS")

config() { # file variant auth-lines
    local extra=""
    if [ "$2" = on ]; then
        extra="transfer_log = \"$WORK/transfer.log\"
[server.admin]
listen = \"127.0.0.1:0\""
    else
        extra="[server.ban]
enabled = false"
    fi
    cat >"$1" <<EOF
[server]
listen = ["127.0.0.1:0"]
passive_ports = "45000-45999"
login_failure_delay = "0s"
cache_dir = "$WORK/cache"
$extra

[site.bench]
[site.bench.auth]
plugin = "builtin:auth-static"
[site.bench.auth.config]
$3
[site.bench.storage]
plugin = "builtin:storage-fs"
[site.bench.storage.dirs]
"/" = "$WORK/root"
EOF
}

# The client: `client.py PORT CASE COUNT` runs COUNT operations.
cat >"$WORK/client.py" <<'PY'
import re, socket, sys

port, case, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
user, password = sys.argv[4], sys.argv[5]

class Ctrl:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.f = self.s.makefile("rb")
        self.reply(220)

    def reply(self, *codes):
        line = self.f.readline().decode()
        while line[3:4] == "-":
            end = line[:3] + " "
            line = self.f.readline().decode()
            while not line.startswith(end):
                line = self.f.readline().decode()
        if codes and int(line[:3]) not in codes:
            raise SystemExit(f"expected {codes}, got {line!r}")
        return line

    def cmd(self, text, *codes):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply(*codes)

    def login(self):
        if self.cmd(f"USER {user}", 230, 331).startswith("331"):
            self.cmd(f"PASS {password}", 230)

    def data(self):
        m = re.search(r"\(\|\|\|(\d+)\|\)", self.cmd("EPSV", 229))
        return socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=600)

    def quit(self):
        self.cmd("QUIT", 221)
        self.s.close()

if case in ("sha512", "trivial"):
    for _ in range(count):
        c = Ctrl()
        c.login()
        c.quit()
else:
    c = Ctrl()
    c.login()
    c.cmd("TYPE I", 200)
    body = bytes(range(256)) * 16
    for i in range(count):
        name = f"small-{i}.bin"
        d = c.data()
        c.cmd(f"STOR {name}", 150, 125)
        d.sendall(body)
        d.close()
        c.reply(226)
        d = c.data()
        c.cmd(f"RETR {name}", 150, 125)
        got = b""
        while chunk := d.recv(65536):
            got += chunk
        d.close()
        c.reply(226)
        assert got == body, f"RETR {name}: {len(got)} bytes"
        c.cmd(f"DELE {name}", 250)
    c.quit()
PY

start() { # config [valgrind...]: starts the server, sets SERVER_PID and PORT
    local log=$WORK/server.log
    : >"$log"
    env NO_COLOR=1 RUST_LOG=info "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 600); do
        PORT=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$log" | head -1 | sed 's/.*://' || true)
        [ -n "$PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.5
    done
    cat "$log" >&2
    echo "server did not start" >&2
    exit 1
}

stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# Instructions in a callgrind dump.
instructions() { # dump
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

declare -A IPO
for case in $CASES; do
    case $case in
        sha512) user=ftpbench; count=$LOGINS
            auth="[site.bench.auth.config.users.ftpbench]
password = \"$HASH\"
home = \"/\"" ;;
        trivial) user=anonymous; count=$TRIVIAL; auth="anonymous = true" ;;
        small) user=ftpbench; count=$FILES
            auth="[site.bench.auth.config.users.ftpbench]
password = \"$HASH\"
home = \"/\"" ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
    for round in $(seq "$ROUNDS"); do
    for variant in $VARIANTS; do
        config "$WORK/wasmftpd.toml" "$variant" "$auth"
        rm -f "$WORK/transfer.log"
        # Natively first: compiles the plugins into the cache the profiled
        # run then loads (compiling under valgrind takes minutes).
        start "$WASMFTPD" serve --config "$WORK/wasmftpd.toml"
        python3 "$WORK/client.py" "$PORT" "$case" 2 "$user" "$PASS"
        stop
        out=$WORK/cg.$case.$variant
        start valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
            "$WASMFTPD" serve --config "$WORK/wasmftpd.toml"
        python3 "$WORK/client.py" "$PORT" "$case" 3 "$user" "$PASS"
        callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
        python3 "$WORK/client.py" "$PORT" "$case" "$count" "$user" "$PASS"
        callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
        stop
        dump=$(ls "$out".* 2>/dev/null | grep -v '\.0$' | sort | head -1 || true)
        [ -n "$dump" ] || dump=$(ls "$out"* | head -1)
        n=$(instructions "$dump")
        IPO[$case,$variant]+=" $((n / count))"
        printf '%s %s round %d: %d instructions per operation (%d operations)\n' \
            "$case" "$variant" "$round" $((n / count)) "$count" >&2
        if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/callgrind.$case.$variant"; fi
        if [ "${OPS_SHARE:-}" = 1 ] && [ "$variant" = on ] && [ "$round" = "$ROUNDS" ]; then
            # Inclusive instructions of the hooks (per run, not per operation).
            callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$dump" 2>/dev/null |
                grep -E 'wasmftpd::(ops|ftp::events)::|record_call|prometheus_client::' |
                grep '\[' | head -25 >&2 || true
        fi
        rm -f "$out"*
    done
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)) }'; }

echo "| case | instructions/op off (median of $ROUNDS) | on | ratio |"
echo "|---|---|---|---|"
for case in $CASES; do
    off=$(median <<<"${IPO[$case,off]:-0}"); on=$(median <<<"${IPO[$case,on]:-0}")
    awk -v c="$case" -v a="$off" -v b="$on" 'BEGIN {
        printf "| %s | %\047d | %\047d | %s |\n", c, a, b, (a > 0 ? sprintf("%.4f", b / a) : "-") }'
done
