#!/usr/bin/env bash
# Side-by-side FTP benchmark: wasmftpd vs vsftpd, pure-ftpd, libunftp and pyftpdlib,
# over loopback, roots on tmpfs, with several clients: bench/ftpbench (ours), curl,
# and Python clients (raw sockets for 1 GiB transfers, ftplib for small files and
# logins, bench/clients.py). For every server and test it reports the throughput
# and the server's CPU seconds per operation, counted over the server's whole
# process tree (a cgroup per server; forked and exited children included), with
# medians over RUNS interleaved rounds and ratios between servers.
#
# Usage (as root, from anywhere):
#   bench/compare.sh
# Environment:
#   SERVERS="vsftpd pure-ftpd wasmftpd libunftp pyftpdlib"
#                                         which servers, in this order. Also known:
#                                         libunftp-nagle (libunftp's own listener,
#                                         without TCP_NODELAY; logins only), wasmftpd-b
#   RUNS=5                                rounds; each round runs every case once on
#                                         every server (the first server rotates from
#                                         round to round), medians over rounds
#   TESTS=retr,stor,small,login,list      which tests; `ftps` adds the FTPS comparison
#                                         (bench/ftps.sh; TESTS=ftps runs only that)
#   CLIENTS=ftpbench,curl,python          which clients (curl: RETR and STOR only;
#                                         python: raw sockets for RETR/STOR, ftplib
#                                         for small files and logins; LIST is
#                                         measured with ftpbench only)
#   LOGIN_SECS=5  LOGIN_CLIENTS=8         login tests: duration, concurrent clients
#                                         (threads in ftpbench, processes in Python)
#   PASS_LEN=12                           length of the benchmark user's password (8-70);
#                                         the SHA-512-crypt cost steps up at 16
#   WASMFTPD=path                         wasmftpd binary [<repo>/target/release/wasmftpd]
#   WASMFTPD_SERVER_EXTRA="..."           TOML lines added to wasmftpd's [server] table
#                                         (bench/ops-cost.sh: metrics listener, transfer log)
#   WASMFTPD_B=path  WASMFTPD_B_ENV="K=V ..."
#                                         server `wasmftpd-b` (name it in SERVERS): a
#                                         second wasmftpd build [WASMFTPD] and/or extra
#                                         environment, for A/B runs of our own changes
#   WASMFTPD_B_STORAGE_CONFIG="K = V"     TOML lines under wasmftpd-b's
#                                         [site.bench.storage.config], e.g.
#                                         "atomic_uploads = false" (the splice path)
#   WASMFTPD_B_SERVER_EXTRA="..."         wasmftpd-b's [server] lines instead of
#                                         WASMFTPD_SERVER_EXTRA (ops cost: with and
#                                         without the transfer log in one run)
#   TRIVIAL_AUTH_PLUGIN=path.wasm         auth plugin for the trivial-auth login run
#                                         (default: builtin auth-static, anonymous);
#                                         its config is TRIVIAL_AUTH_CONFIG (TOML lines
#                                         under [site.bench.auth.config]), by default a
#                                         user table with the plain-text password
#   WASMFTPD_LOG=filter                   RUST_LOG for wasmftpd (default: unset, its
#                                         default info level: 3 log lines per session);
#                                         e.g. "warn,wasmftpd::server=info" (the script
#                                         needs the server's 'listening on' line) to run
#                                         it without per-session logs like the peers
#   FTPBENCH=path                         ftpbench binary (else built with cargo into
#                                         CARGO_TARGET_DIR [<repo>/target], -p ftpbench)
#   PYTHON=python3                        Python (3.8+) for bench/clients.py
#   PUREFTPD_PREFIX=/opt/pure-ftpd        where an unpacked pure-ftpd lives (see below)
#   FTPBENCH_ARGS="..."                   extra `ftpbench run` options (see ftpbench --help)
#   RESULTS=file.md                       also write the markdown tables there
#   RAW=file.tsv                          also write every measurement (one per line)
#   SHM=/dev/shm                          tmpfs for the server root
#   SIZE=1073741824                       RETR/STOR file size (smaller for a smoke test)
#   PEERS_TARGET=/work/targets/peers      cargo target dir for bench/peers/unftp (built
#                                         --release --locked, only when libunftp is in
#                                         SERVERS), and home of the pyftpdlib venv
#   PYFTPDLIB_VENV=dir                    venv with pyftpdlib [$PEERS_TARGET/pyftpdlib-
#                                         <version>]; made with `python3 -m venv` and
#                                         `pip install pyftpdlib==<version>` if missing
#
# CPU accounting: each server runs in its own cgroup v2 (under /sys/fs/cgroup, or
# /sys/fs/cgroup/unified on a hybrid cgroup v1/v2 host), whose cpu.stat counts
# every process that ever ran in it, so vsftpd's and pure-ftpd's per-session
# processes are included after they exit. Without a writable cgroup v2 the script
# sums utime+stime+cutime+cstime over the server's process tree in /proc (exited
# children count once their parent has waited for them; 10 ms ticks). The
# server's CPU is read just before and after each client invocation, so it
# includes that invocation's login and checks (one login per STOR/RETR/small
# run: negligible next to the operation). The clients run in a cgroup of their
# own; their CPU per operation is reported too, as it decides how much of the two
# cores is left to the server.
#
# Installs what is missing with apt-get (vsftpd, iperf3, openssl, curl). pure-ftpd and
# vsftpd conflict as Debian packages (both provide ftp-server), so when vsftpd is
# installed pure-ftpd is fetched with `apt-get download` and unpacked with `dpkg -x`
# into PUREFTPD_PREFIX instead (its shared libraries are installed with apt-get).
#
# libunftp (bench/peers/unftp, its own cargo workspace) and pyftpdlib
# (bench/peers/pyftpd.py) check a plain-text password, as wasmftpd-trivial-auth does;
# their login rates are compared with that row, not with the SHA-512-crypt logins of
# vsftpd, pure-ftpd and wasmftpd. A peer that fails to build, install or start is
# reported as skipped (with the reason) and the others are measured.
#
# Everything listens on 127.0.0.1 only. A temporary system user `ftpbench` (SHA-512
# crypt password, used by vsftpd through PAM and as the owner of pure-ftpd's virtual
# user) is created and removed again; the tmpfs root, the cgroups and all servers are
# removed or stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
SERVERS=${SERVERS:-"vsftpd pure-ftpd wasmftpd libunftp pyftpdlib"}
RUNS=${RUNS:-5}
LOGIN_SECS=${LOGIN_SECS:-5}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-8}
TESTS=${TESTS:-retr,stor,small,login,list}
CLIENTS=${CLIENTS:-ftpbench,curl,python}
WASMFTPD=${WASMFTPD:-$REPO/target/release/wasmftpd}
PYTHON=${PYTHON:-python3}
PUREFTPD_PREFIX=${PUREFTPD_PREFIX:-/opt/pure-ftpd}
SHM=${SHM:-/dev/shm}
SIZE=${SIZE:-1073741824}
PEERS_TARGET=${PEERS_TARGET:-/work/targets/peers}
PYFTPDLIB_VERSION=2.2.0
LIBUNFTP_VERSION=0.24.0   # pinned in bench/peers/unftp/Cargo.toml (and its Cargo.lock)
PYFTPDLIB_VENV=${PYFTPDLIB_VENV:-$PEERS_TARGET/pyftpdlib-$PYFTPDLIB_VERSION}
BENCH_USER=ftpbench
BENCH_MARK="wasmftpd bench (temporary)"
# A fixed length keeps the SHA-512-crypt cost the same from run to run: up to
# 15 characters each of its 5,000 rounds hashes one SHA-512 block, from 16 on
# most rounds hash two (every server's login gets ~1.5x dearer).
PASS_LEN=${PASS_LEN:-12}
[ "$PASS_LEN" -ge 8 ] && [ "$PASS_LEN" -le 70 ] || { echo "PASS_LEN must be 8 to 70" >&2; exit 2; }
PASS_HEX=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
PASS="bench-${PASS_HEX:0:$((PASS_LEN - 6))}"

log() { printf '[compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (starts vsftpd/pure-ftpd, creates a system user)"

# --- cleanup -----------------------------------------------------------------------
PIDS=()
WORK=""
CG=""   # this run's cgroup directory, when cgroup v2 is usable
CREATED_USER=0
cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if [ -n "$CG" ]; then
        # Per-session processes a server forked and left behind.
        for d in "$CG"/*/; do
            [ -f "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill" 2>/dev/null
        done
        sleep 0.2
        for d in "$CG"/*/; do rmdir "$d" 2>/dev/null; done
        rmdir "$CG" 2>/dev/null
    fi
    [ -n "$WORK" ] && rm -rf -- "$WORK"
    if [ "$CREATED_USER" = 1 ] || getent passwd "$BENCH_USER" | grep -q "$BENCH_MARK"; then
        userdel "$BENCH_USER" 2>/dev/null
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- tools -------------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # packages; those already installed are left as they are
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ $APT_UPDATED = 0 ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}
command -v openssl >/dev/null || apt_install openssl
command -v iperf3 >/dev/null || apt_install iperf3
[[ ",$CLIENTS," != *,curl,* ]] || command -v curl >/dev/null || apt_install curl
[[ ",$CLIENTS," != *,python,* ]] || command -v "$PYTHON" >/dev/null || apt_install python3
if [[ " $SERVERS " == *" vsftpd "* ]] && ! command -v vsftpd >/dev/null; then
    apt_install vsftpd
fi
PUREFTPD=$(command -v pure-ftpd || true)
PUREPW=$(command -v pure-pw || true)
if [[ " $SERVERS " == *" pure-ftpd "* ]] && [ -z "$PUREFTPD" ]; then
    if [ ! -x "$PUREFTPD_PREFIX/usr/sbin/pure-ftpd" ]; then
        if ! dpkg -s vsftpd >/dev/null 2>&1; then
            apt_install pure-ftpd
        else
            log "pure-ftpd conflicts with the vsftpd package: unpacking it into $PUREFTPD_PREFIX"
            apt_install libsodium23 libcap2 libcrypt1 libpam0g libssl3
            dl=$(mktemp -d)
            (cd "$dl" && chmod 777 . && apt-get download -qq pure-ftpd >&2)
            dpkg -x "$dl"/pure-ftpd_*.deb "$PUREFTPD_PREFIX"
            rm -rf -- "$dl"
        fi
    fi
    PUREFTPD=$(command -v pure-ftpd || echo "$PUREFTPD_PREFIX/usr/sbin/pure-ftpd")
    PUREPW=$(command -v pure-pw || echo "$PUREFTPD_PREFIX/usr/bin/pure-pw")
fi

# Peers built or installed here; a failure skips that peer only.
declare -A PEER_SKIP  # PEER_SKIP[name] = reason
UNFTP_PEER=$PEERS_TARGET/release/unftp-peer
if [[ " $SERVERS " == *" libunftp"* ]]; then
    log "building bench/peers/unftp (libunftp $LIBUNFTP_VERSION, release) into $PEERS_TARGET"
    mkdir -p "$PEERS_TARGET" 2>/dev/null || true
    if ! (cd "$HERE/peers/unftp" && CARGO_TARGET_DIR=$PEERS_TARGET \
            cargo build --release --locked -q -j2 >"$PEERS_TARGET/unftp-build.log" 2>&1); then
        tail -20 "$PEERS_TARGET/unftp-build.log" >&2 || true
        PEER_SKIP[libunftp]="skipped: bench/peers/unftp did not build (log: $PEERS_TARGET/unftp-build.log)"
        log "${PEER_SKIP[libunftp]}"
    fi
fi
if [[ " $SERVERS " == *" pyftpdlib "* ]] &&
    ! "$PYFTPDLIB_VENV/bin/python" -c 'import pyftpdlib' 2>/dev/null; then
    log "installing pyftpdlib $PYFTPDLIB_VERSION into $PYFTPDLIB_VENV"
    mkdir -p "$(dirname "$PYFTPDLIB_VENV")" 2>/dev/null || true
    if ! { command -v python3 >/dev/null || apt_install python3; } ||
        ! { python3 -m venv "$PYFTPDLIB_VENV" >&2 || { apt_install python3-venv && python3 -m venv "$PYFTPDLIB_VENV" >&2; }; } ||
        ! "$PYFTPDLIB_VENV/bin/pip" install -q "pyftpdlib==$PYFTPDLIB_VERSION" >&2; then
        PEER_SKIP[pyftpdlib]="skipped: could not install pyftpdlib $PYFTPDLIB_VERSION into $PYFTPDLIB_VENV"
        log "${PEER_SKIP[pyftpdlib]}"
    fi
fi

if [ -z "${FTPBENCH:-}" ]; then
    log "building ftpbench (release)"
    (cd "$REPO" && cargo build --release -q -p ftpbench -j1 >&2)
    FTPBENCH=${CARGO_TARGET_DIR:-$REPO/target}/release/ftpbench
fi
[ -x "$FTPBENCH" ] || die "ftpbench binary not found at $FTPBENCH"

# --- root on tmpfs -----------------------------------------------------------------
WORK=$(mktemp -d "$SHM/wasmftpd-bench.XXXXXX")
chmod 755 "$WORK"
ROOT=$WORK/root
log "preparing $ROOT ($SIZE-byte file, 10,000-entry directory)"
"$FTPBENCH" prepare "$ROOT" --big-size "$SIZE" >&2

HASH=$(openssl passwd -6 "$PASS")
if getent passwd "$BENCH_USER" >/dev/null; then
    getent passwd "$BENCH_USER" | grep -q "$BENCH_MARK" ||
        die "a user $BENCH_USER exists that this script did not create; not touching it"
    usermod -p "$HASH" -d "$ROOT" "$BENCH_USER"
else
    # /bin/sh: Debian's PAM stack for vsftpd requires a shell listed in /etc/shells.
    useradd -M -d "$ROOT" -s /bin/sh -c "$BENCH_MARK" -p "$HASH" "$BENCH_USER"
    CREATED_USER=1
fi
chown -R "$BENCH_USER:" "$ROOT"

# --- helpers -----------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_port() { # pid port log
    local i
    for i in $(seq 100); do
        kill -0 "$1" 2>/dev/null || { log "server exited; its log:"; cat "$3" >&2; return 1; }
        port_free "$2" || return 0
        sleep 0.1
    done
    log "server did not open port $2 in 10 s; its log:"; cat "$3" >&2; return 1
}
median() { tr ',' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END{if(NR) print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# --- CPU accounting ----------------------------------------------------------------
# A cgroup v2 per server (and one for the clients): its cpu.stat usage_usec counts
# every process that ran in it, exited ones included.
CPU_HOW="the server's process tree in /proc (utime+stime+cutime+cstime, 10 ms ticks)"
cg_init() {
    local base=""
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then base=/sys/fs/cgroup
    elif [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then base=/sys/fs/cgroup/unified; fi
    [ -n "$base" ] && mkdir "$base/wasmftpd-bench.$$" 2>/dev/null || return 0
    CG=$base/wasmftpd-bench.$$
    if mkdir "$CG/probe" 2>/dev/null && [ -f "$CG/probe/cpu.stat" ] &&
        (echo "$BASHPID" >"$CG/probe/cgroup.procs") 2>/dev/null; then
        rmdir "$CG/probe" 2>/dev/null || true
        CPU_HOW="a cgroup v2 per server ($CG/<server>/cpu.stat usage_usec; forked and exited processes included)"
    else
        rmdir "$CG/probe" "$CG" 2>/dev/null || true
        CG=""
    fi
}
# in_cgroup NAME CMD...: runs CMD (exec'd, same pid) in this run's cgroup NAME.
in_cgroup() {
    local name=$1; shift
    if [ -z "$CG" ]; then "$@"; return; fi
    mkdir -p "$CG/$name"
    # shellcheck disable=SC2016
    bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' in-cgroup "$CG/$name" "$@"
}
declare -A SPID     # SPID[server] = pid of the server's first process
# Microseconds of CPU a server has used so far.
server_usec() {
    if [ -n "$CG" ]; then
        awk '$1 == "usage_usec" {print $2}' "$CG/$1/cpu.stat"
        return
    fi
    # Without a cgroup: sum over the server's process tree; cat skips processes that
    # vanish while it reads, each line is "pid (comm) state ppid ... utime stime
    # cutime cstime ...".
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="${SPID[$1]}" -v hz="$(getconf CLK_TCK)" '
        { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          parent[pid] = f[2]; ticks[pid] = f[12] + f[13] + f[14] + f[15] }
        END { for (p in parent) { q = p
                  for (i = 0; i < 64 && q != root && q > 1; i++) q = parent[q]
                  if (q == root) sum += ticks[p] }
              printf "%.0f\n", sum * 1e6 / hz }'
}
# Microseconds of CPU the clients have used so far.
client_usec() {
    if [ -n "$CG" ]; then
        if [ -f "$CG/client/cpu.stat" ]; then awk '$1 == "usage_usec" {print $2}' "$CG/client/cpu.stat"
        else echo 0; fi
        return
    fi
    # This shell's waited-for children (the clients); `times` runs in this shell.
    times >"$WORK/times"
    awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
                   printf "%.0f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1e6 }' "$WORK/times"
}
# --- measurements ------------------------------------------------------------------
declare -A V        # V[server,case] = comma-separated per-round throughput (case = test:client)
declare -A C        # C[server,case] = per-round server CPU per unit (see cpu_unit)
declare -A K        # K[server,case] = per-round client CPU per unit
declare -A R RC RK  # medians of V, C, K
declare -A STATUS   # STATUS[server] = running | skipped: why | failed: why
declare -A FAILED   # FAILED[server,case] = why (the case is not run again)
declare -A PORT     # PORT[server]
declare -A STESTS   # STESTS[server] = tests run against that server
declare -A LOGIN_AS # LOGIN_AS[server] = user for that server, when not $BENCH_USER
ORDER=()

add_server() { # label port tests
    PORT[$1]=$2; STESTS[$1]=$3; STATUS[$1]=running
}

# Every client with every test it can run; TESTS and CLIENTS pick from these.
ALL_CASES=(retr:ftpbench retr:curl retr:python stor:ftpbench stor:curl stor:python
    small:ftpbench small:python login:ftpbench login:python list:ftpbench)
CASES=()
for c in "${ALL_CASES[@]}"; do
    [[ ",$TESTS," == *,${c%%:*},* && ",$CLIENTS," == *,${c#*:},* ]] && CASES+=("$c")
done
[ ${#CASES[@]} -gt 0 ] || [[ ",$TESTS," == *,ftps,* ]] ||
    die "no test/client pair in TESTS=$TESTS CLIENTS=$CLIENTS"

# curl, as a user runs it; prints a result line like the other clients'.
curl_case() { # server test user
    local url="ftp://127.0.0.1:${PORT[$1]}" w bytes pre total
    case $2 in
        retr) w=$(in_cgroup client curl -sS --fail -o /dev/null -u "$3:$PASS" \
                -w '%{size_download} %{time_pretransfer} %{time_total}' "$url/big.bin") || return 1 ;;
        stor) w=$(in_cgroup client curl -sS --fail -T "$ROOT/big.bin" -u "$3:$PASS" \
                -w '%{size_upload} %{time_pretransfer} %{time_total}' "$url/curl-stor-$1.bin") || return 1 ;;
    esac
    read -r bytes pre total <<<"$w"
    if [ "$bytes" != "$SIZE" ]; then
        log "curl $2 against $1 moved $bytes bytes, expected $SIZE"; return 1
    fi
    awk -v s="$1" -v t="$2" -v b="$bytes" -v p="$pre" -v e="$total" 'BEGIN {
        v = b / 1e6 / (e - p); printf "result server=%s test=%s unit=MB/s median=%.1f runs=%.1f ops=%d\n", s, t, v, v, b }'
}

# CPU seconds per unit: per GiB (RETR, STOR), per 1,000 (small files, logins), ms per LIST.
cpu_per_unit() { # test ops usec
    case $1 in
        retr | stor) awk -v o="$2" -v u="$3" 'BEGIN{printf "%.4f", u / 1e6 / (o / 1073741824)}' ;;
        small | login) awk -v o="$2" -v u="$3" 'BEGIN{printf "%.4f", u / 1e6 / (o / 1000)}' ;;
        list) awk -v o="$2" -v u="$3" 'BEGIN{printf "%.3f", u / 1e3 / o}' ;;
    esac
}

run_case() { # server case round
    local s=$1 cs=$2 r=$3 t=${2%%:*} k=${2#*:} out=$WORK/case.out ok=1
    local user=${LOGIN_AS[$1]:-$BENCH_USER} port=${PORT[$1]} s0 s1 c0 c1 value ops args=()
    log "round $r: $t with $k against $s"
    s0=$(server_usec "$s"); c0=$(client_usec)
    case $k in
        ftpbench)
            # shellcheck disable=SC2086
            in_cgroup client "$FTPBENCH" run --port "$port" --user "$user" --pass "$PASS" \
                --label "$s" --runs 1 --tests "$t" --stor-size "$SIZE" --no-warmup \
                --stor-path "/ftpbench-stor-$s.bin" --keep-upload \
                --login-secs "$LOGIN_SECS" --login-clients "$LOGIN_CLIENTS" \
                ${FTPBENCH_ARGS:-} >"$out" || ok=0 ;;
        python)
            case $t in
                stor) args=(--size "$SIZE" --path "/python-stor-$s.bin") ;;
                retr) args=(--path /big.bin) ;;
                login) args=(--secs "$LOGIN_SECS" --clients "$LOGIN_CLIENTS") ;;
            esac
            in_cgroup client "$PYTHON" "$HERE/clients.py" "$t" --port "$port" --user "$user" \
                --pass "$PASS" --label "$s" "${args[@]}" >"$out" || ok=0 ;;
        curl) curl_case "$s" "$t" "$user" >"$out" || ok=0 ;;
    esac
    s1=$(server_usec "$s"); c1=$(client_usec)
    if [ "$t" = stor ] && [ $ok = 1 ]; then
        # Not measured (deleting 1 GiB costs the server a fifth of what receiving
        # it does): check what the server holds, and make room for the next upload.
        "$PYTHON" "$HERE/clients.py" remove --port "$port" --user "$user" --pass "$PASS" \
            --path "/$k-stor-$s.bin" --size "$SIZE" || ok=0
    fi
    read -r value ops < <(awk '/^result / { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                                           print f["median"], f["ops"] }' "$out") || true
    if [ $ok = 0 ] || [ -z "${ops:-}" ]; then
        FAILED[$s,$cs]="failed in round $r (error above)"
        log "$s: $t with $k failed; not run again"
        return 0
    fi
    V[$s,$cs]+=",$value"
    C[$s,$cs]+=",$(cpu_per_unit "$t" "$ops" $((s1 - s0)))"
    K[$s,$cs]+=",$(cpu_per_unit "$t" "$ops" $((c1 - c0)))"
    log "  $value $(rate_unit "$t"); server CPU $(cpu_per_unit "$t" "$ops" $((s1 - s0))) $(cpu_unit "$t"), client $(cpu_per_unit "$t" "$ops" $((c1 - c0)))"
    [ -z "${RAW:-}" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$r" "$s" "$t" "$k" "$value" "$ops" $((s1 - s0)) $((c1 - c0)) >>"$RAW"
}

runs_on() { # server case: whether this round measures it
    [ "${STATUS[$1]:-}" = running ] && [[ ",${STESTS[$1]}," == *,${2%%:*},* ]] &&
        [ -z "${FAILED[$1,$2]:-}" ]
}

# Before the rounds: ftpbench's checked passes (RETR compared byte for byte with the
# pattern, a STOR read back and compared), not measured. They also warm the tmpfs,
# whose first upload is much slower.
verify_server() { # server
    local t=() x
    for x in retr stor; do [[ ",${STESTS[$1]}," == *,$x,* ]] && t+=("$x"); done
    [ ${#t[@]} -gt 0 ] || return 0
    log "checking $1's content ($(IFS=,; echo "${t[*]}"), ftpbench, not measured)"
    if ! "$FTPBENCH" run --port "${PORT[$1]}" --user "${LOGIN_AS[$1]:-$BENCH_USER}" --pass "$PASS" \
        --label "$1" --runs 1 --tests "$(IFS=,; echo "${t[*]}")" --stor-size "$SIZE" >/dev/null; then
        STATUS[$1]="failed: the content check failed (error above)"
    fi
}

rate_unit() { case $1 in retr | stor) echo "MB/s" ;; small) echo "files/s" ;; login) echo "logins/s" ;; list) echo "s" ;; esac; }
cpu_unit() {
    case $1 in
        retr) echo "s per GiB sent" ;; stor) echo "s per GiB received" ;;
        small) echo "s per 1,000 files" ;; login) echo "s per 1,000 logins" ;; list) echo "ms per LIST" ;;
    esac
}

# --- iperf3 ------------------------------------------------------------------------
IPERF_PORT=""
start_iperf() {
    IPERF_PORT=$(free_port 5201)
    iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    wait_port "$pid" "$IPERF_PORT" "$WORK/iperf3.log" || IPERF_PORT=""
}
iperf_round() {
    [ -n "$IPERF_PORT" ] || return 0
    local v
    v=$(iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 3 -J |
        awk '/"sum_received"/{f=1} f && /"bits_per_second"/{gsub(/[^0-9.e+]/,"",$2); printf "%.0f", $2/8/1e6; exit}')
    log "iperf3 loopback: $v MB/s"
    V[iperf3,tcp]+=",$v"
}

# --- servers (all started first, then measured in interleaved rounds) ---------------
start_vsftpd() {
    ORDER+=(vsftpd)
    command -v vsftpd >/dev/null || { STATUS[vsftpd]="skipped: vsftpd not installed"; return; }
    local port; port=$(free_port 2121)
    in_cgroup vsftpd vsftpd "$HERE/vsftpd.conf" -olisten_port="$port" -olocal_root="$ROOT" \
        -opasv_min_port=41000 -opasv_max_port=41999 >"$WORK/vsftpd.log" 2>&1 &
    local pid=$!; PIDS+=("$pid"); SPID[vsftpd]=$pid
    if wait_port "$pid" "$port" "$WORK/vsftpd.log"; then add_server vsftpd "$port" "$TESTS"
    else STATUS[vsftpd]="failed: did not start (log above)"; fi
}

start_pureftpd() {
    ORDER+=(pure-ftpd)
    [ -x "$PUREFTPD" ] || { STATUS[pure-ftpd]="skipped: pure-ftpd not available"; return; }
    local port uid gid flags=()
    port=$(free_port 2131)
    uid=$(id -u "$BENCH_USER"); gid=$(id -g "$BENCH_USER")
    # pure-pw hashes with argon2id; swap in the SHA-512-crypt hash the peers use.
    printf '%s\n%s\n' "$PASS" "$PASS" |
        "$PUREPW" useradd "$BENCH_USER" -u "$uid" -g "$gid" -d "$ROOT" -f "$WORK/pureftpd.passwd" >/dev/null
    awk -F: -v OFS=: -v u="$BENCH_USER" -v h="$HASH" '$1==u{$2=h}1' "$WORK/pureftpd.passwd" >"$WORK/pureftpd.passwd2"
    mv "$WORK/pureftpd.passwd2" "$WORK/pureftpd.passwd"
    "$PUREPW" mkdb "$WORK/pureftpd.pdb" -f "$WORK/pureftpd.passwd"
    mapfile -t flags < <(grep -v '^[[:space:]]*\(#\|$\)' "$HERE/pure-ftpd.flags")
    in_cgroup pure-ftpd "$PUREFTPD" "${flags[@]}" -S "127.0.0.1,$port" -l "puredb:$WORK/pureftpd.pdb" \
        -p 42000:42999 >"$WORK/pure-ftpd.log" 2>&1 &
    local pid=$!; PIDS+=("$pid"); SPID[pure-ftpd]=$pid
    if wait_port "$pid" "$port" "$WORK/pure-ftpd.log"; then add_server pure-ftpd "$port" "$TESTS"
    else STATUS[pure-ftpd]="failed: did not start (log above)"; fi
}

wasmftpd_config() { # file passive-range auth-plugin auth-config-lines [storage-config-lines]
    cat >"$1" <<EOF
[server]
listen = ["127.0.0.1:0"]
passive_ports = "$2"
login_failure_delay = "0s"
max_connections = 2000
max_connections_per_ip = 2000
${WASMFTPD_SERVER_EXTRA:-}

[site.bench]
[site.bench.auth]
plugin = "$3"
[site.bench.auth.config]
$4
[site.bench.storage]
plugin = "builtin:storage-fs"
[site.bench.storage.dirs]
"/" = "$ROOT"
[site.bench.storage.config]
${5:-}
EOF
}

start_wasmftpd_one() { # label config tests [binary [env assignments]]
    local log=$WORK/$1.log i port="" pid bin=${4:-$WASMFTPD} extra=()
    [ -z "${5:-}" ] || read -ra extra <<<"$5"
    in_cgroup "$1" env NO_COLOR=1 ${WASMFTPD_LOG:+"RUST_LOG=$WASMFTPD_LOG"} "${extra[@]}" "$bin" serve --config "$2" --listen 127.0.0.1:0 >"$log" 2>&1 &
    pid=$!; PIDS+=("$pid"); SPID[$1]=$pid
    for i in $(seq 300); do
        port=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'listening on 127\.0\.0\.1:[0-9]*' | head -1 | sed 's/.*://' || true)
        [ -n "$port" ] && { add_server "$1" "$port" "$3"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$1 did not report 'listening on 127.0.0.1:PORT' within 30 s; its log:"; cat "$log" >&2
    STATUS[$1]="failed: did not start (log above)"
}

start_wasmftpd() {
    ORDER+=(wasmftpd)
    local t="wasmftpd-trivial-auth"
    if [ ! -x "$WASMFTPD" ]; then
        STATUS[wasmftpd]="skipped: no binary at $WASMFTPD (build it, or set WASMFTPD=path)"
        log "${STATUS[wasmftpd]}"
    else
        wasmftpd_config "$WORK/wasmftpd.toml" 40000-40999 "builtin:auth-static" \
            "[site.bench.auth.config.users.$BENCH_USER]
password = \"$HASH\"
home = \"/\""
        start_wasmftpd_one wasmftpd "$WORK/wasmftpd.toml" "$TESTS"
    fi
    # The login rate with an auth plugin that does no hashing: the per-session cost
    # of the sandbox (target: ahead of libunftp's ~9,400/s). Only when logins
    # are measured at all.
    [[ ",$TESTS," == *,login,* ]] || return 0
    ORDER+=("$t")
    if [ ! -x "$WASMFTPD" ]; then
        STATUS[$t]="skipped: no wasmftpd binary"
    elif [ -z "${TRIVIAL_AUTH_PLUGIN:-}" ]; then
        # Default: the builtin auth-static's anonymous login, which checks no hash.
        wasmftpd_config "$WORK/trivial.toml" 43000-43999 "builtin:auth-static" "anonymous = true"
        LOGIN_AS[$t]=anonymous
    else
        wasmftpd_config "$WORK/trivial.toml" 43000-43999 "$TRIVIAL_AUTH_PLUGIN" \
            "${TRIVIAL_AUTH_CONFIG:-"[site.bench.auth.config.users.$BENCH_USER]
password = \"$PASS\"
home = \"/\""}"
    fi
    if [ -x "$WASMFTPD" ]; then
        start_wasmftpd_one "$t" "$WORK/trivial.toml" login
    fi
}

# A second wasmftpd build (or the same one with other settings), for A/B
# comparisons of our own changes: same config, its own cgroup and passive range.
start_wasmftpd_b() {
    ORDER+=(wasmftpd-b)
    local bin=${WASMFTPD_B:-$WASMFTPD}
    [ -x "$bin" ] || { STATUS[wasmftpd-b]="skipped: no binary at $bin (set WASMFTPD_B)"; return; }
    WASMFTPD_SERVER_EXTRA=${WASMFTPD_B_SERVER_EXTRA-${WASMFTPD_SERVER_EXTRA:-}} \
        wasmftpd_config "$WORK/wasmftpd-b.toml" 48000-48999 "builtin:auth-static" \
        "[site.bench.auth.config.users.$BENCH_USER]
password = \"$HASH\"
home = \"/\"" "${WASMFTPD_B_STORAGE_CONFIG:-}"
    start_wasmftpd_one wasmftpd-b "$WORK/wasmftpd-b.toml" "$TESTS" "$bin" "${WASMFTPD_B_ENV:-}"
}

# libunftp: bench/peers/unftp, one user, plain password compare. By default it accepts
# connections itself to set TCP_NODELAY (libunftp has no option for it);
# libunftp-nagle is libunftp's own listener, measured for logins only (without
# TCP_NODELAY a session manages ~11 small files/s: every reply waits for a delayed ACK).
start_libunftp() { # label passive-range tests [extra args]
    local label=$1 range=$2 tests=$3 port pid; shift 3
    ORDER+=("$label")
    if [ -n "${PEER_SKIP[libunftp]:-}" ]; then STATUS[$label]=${PEER_SKIP[libunftp]}; return; fi
    [ -x "$UNFTP_PEER" ] || { STATUS[$label]="skipped: no binary at $UNFTP_PEER"; return; }
    port=$(free_port 2141)
    in_cgroup "$label" env UNFTP_PEER_PASS="$PASS" "$UNFTP_PEER" --root "$ROOT" --port "$port" --user "$BENCH_USER" \
        --passive "$range" "$@" >"$WORK/$label.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); SPID[$label]=$pid
    if wait_port "$pid" "$port" "$WORK/$label.log"; then add_server "$label" "$port" "$tests"
    else STATUS[$label]="skipped: did not start (log above)"; fi
}

start_pyftpdlib() {
    ORDER+=(pyftpdlib)
    if [ -n "${PEER_SKIP[pyftpdlib]:-}" ]; then STATUS[pyftpdlib]=${PEER_SKIP[pyftpdlib]}; return; fi
    local port pid
    port=$(free_port 2161)
    in_cgroup pyftpdlib env PYFTPD_PASS="$PASS" "$PYFTPDLIB_VENV/bin/python" "$HERE/peers/pyftpd.py" --root "$ROOT" \
        --port "$port" --user "$BENCH_USER" --passive 45000-45999 >"$WORK/pyftpdlib.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); SPID[pyftpdlib]=$pid
    if wait_port "$pid" "$port" "$WORK/pyftpdlib.log"; then add_server pyftpdlib "$port" "$TESTS"
    else STATUS[pyftpdlib]="skipped: did not start (log above)"; fi
}

# --- run ---------------------------------------------------------------------------
cg_init
log "CPU accounting: $CPU_HOW"
[ -z "${RAW:-}" ] || printf 'round\tserver\ttest\tclient\tvalue\tops\tserver_usec\tclient_usec\n' >"$RAW"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_BEFORE=$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|rust-lld|clang)' || true)
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# FTPS (bench/ftps.sh, servers of its own, TESTS=ftps) runs first; its report
# follows the clear-text one.
FTPS_REPORT=""
if [[ ",$TESTS," == *,ftps,* ]]; then
    # shellcheck source=bench/ftps.sh
    source "$HERE/ftps.sh"
    ftps_run >"$WORK/ftps.md"
    ftps_stop
    FTPS_REPORT=$(cat "$WORK/ftps.md")
    if [ ${#CASES[@]} -eq 0 ]; then
        { echo "Run $START, FTPS only; load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
          echo "$FTPS_REPORT"; } | tee "${RESULTS:-/dev/null}"
        exit "$FTPS_FAILED"
    fi
fi
start_iperf
for s in $SERVERS; do
    case $s in
        vsftpd) start_vsftpd ;;
        pure-ftpd) start_pureftpd ;;
        wasmftpd) start_wasmftpd ;;
        wasmftpd-b) start_wasmftpd_b ;;
        libunftp) start_libunftp libunftp 44000-44999 "$TESTS" ;;
        libunftp-nagle) start_libunftp libunftp-nagle 46000-46999 login --no-nodelay ;;
        pyftpdlib) start_pyftpdlib ;;
        *) die "unknown server $s" ;;
    esac
done
for s in "${ORDER[@]}"; do
    [ "${STATUS[$s]:-}" = running ] && verify_server "$s"
done
# Rounds: every case once per server per round, the servers taking turns within a
# case and the first server rotating from round to round, so that a load change on
# the machine (other builds) hits all servers alike.
N=${#ORDER[@]}
for r in $(seq "$RUNS"); do
    iperf_round
    for cs in "${CASES[@]}"; do
        for k in $(seq 0 $((N - 1))); do
            s=${ORDER[$(((k + r - 1) % N))]}
            runs_on "$s" "$cs" && run_case "$s" "$cs" "$r"
        done
    done
done
for key in "${!V[@]}"; do
    R[$key]=$(median <<<"${V[$key]}")
    RC[$key]=$(median <<<"${C[$key]:-}")
    RK[$key]=$(median <<<"${K[$key]:-}")
done
R[iperf3]=$(median <<<"${V[iperf3,tcp]:-}")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_AFTER=$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|rust-lld|clang)' || true)

# --- report ------------------------------------------------------------------------
if [ "$SIZE" = 1073741824 ]; then SZ="1 GiB"; else SZ="$SIZE B"; fi
case_name() { # case -> "test | client"
    case $1 in
        retr:*) printf 'RETR %s' "$SZ" ;;
        stor:*) printf 'STOR %s' "$SZ" ;;
        small:*) printf '1,000 × 4 KiB STOR+RETR+DELE' ;;
        login:*) printf 'connect+login+QUIT, %s clients' "$LOGIN_CLIENTS" ;;
        list:*) printf 'LIST 10,000 entries' ;;
    esac
    case $1 in
        *:ftpbench) printf ' | ftpbench' ;;
        *:curl) printf ' | curl' ;;
        retr:python | stor:python) printf ' | Python, raw socket' ;;
        login:python) printf ' | Python ftplib, %s processes' "$LOGIN_CLIENTS" ;;
        *:python) printf ' | Python ftplib' ;;
    esac
}
fmt() { # value [decimals]
    [ -z "$1" ] && { echo "–"; return; }
    awk -v v="$1" -v d="${2:-0}" 'BEGIN{printf "%.*f", d, v}'
}
rate_fmt() { case ${1%%:*} in list) fmt "$2" 4 ;; *) fmt "$2" 0 ;; esac; }
cpu_fmt() { case ${1%%:*} in list) fmt "$2" 1 ;; *) fmt "$2" 3 ;; esac; }
# Login rates are only compared within one kind of password check: SHA-512 crypt
# (vsftpd, pure-ftpd, wasmftpd) or none / a plain compare (the rest).
check_kind() { case $1 in libunftp | libunftp-nagle | pyftpdlib | wasmftpd-trivial-auth) echo plain ;; *) echo crypt ;; esac; }
comparable() { [ "${1%%:*}" != login ] || [ "$(check_kind "$2")" = "$(check_kind "$3")" ]; } # case a b
# "x.xx×", higher is better: throughput divides (LIST times the other way round).
speed_ratio() { # case ours theirs
    [ -z "$2" ] || [ -z "$3" ] && { echo "–"; return; }
    case $1 in
        list:*) awk -v a="$2" -v b="$3" 'BEGIN{printf "%.2f×", b / a}' ;;
        *) awk -v a="$2" -v b="$3" 'BEGIN{printf "%.2f×", a / b}' ;;
    esac
}
# "x.xx×", lower is better: our CPU per operation / theirs.
cpu_ratio() { # ours theirs
    [ -z "$1" ] || [ -z "$2" ] && { echo "–"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f×", a / b; else print "–" }'
}
has_results() { # server
    local cs
    for cs in "${CASES[@]}"; do [ -n "${R[$1,$cs]:-}" ] && return 0; done
    return 1
}
SHOWN=()
for s in "${ORDER[@]}"; do has_results "$s" && SHOWN+=("$s"); done
PEERS=(vsftpd pure-ftpd libunftp libunftp-nagle pyftpdlib)

table() { # title-row-unit-function value-array
    local unitf=$1 arr=$2 fmtf=$3 cs s row hdr="| test | client | unit" sep="|---|---|---"
    for s in "${SHOWN[@]}"; do hdr+=" | $s"; sep+="|---:"; done
    echo "$hdr |"; echo "$sep|"
    for cs in "${CASES[@]}"; do
        row="| $(case_name "$cs") | $($unitf "${cs%%:*}")"
        local any=0
        for s in "${SHOWN[@]}"; do
            local -n a=$arr
            local v=${a[$s,$cs]:-}
            [ -n "$v" ] && any=1
            row+=" | $($fmtf "$cs" "$v")"
        done
        [ $any = 1 ] && echo "$row |"
    done
}

# One line per target: ratio of wasmftpd's median to a peer's, and met or not.
target() { # description server case kind(speed|cpu) peer op(ge|gt|le|lt) bound
    local d=$1 s=$2 cs=$3 kind=$4 p=$5 op=$6 b=$7 x verdict
    if [ "$kind" = speed ]; then x=$(speed_ratio "$cs" "${R[$s,$cs]:-}" "${R[$p,$cs]:-}")
    else x=$(cpu_ratio "${RC[$s,$cs]:-}" "${RC[$p,$cs]:-}"); fi
    if [ "$x" = "–" ]; then verdict="not measured"
    else
        verdict=$(awk -v x="${x%×}" -v b="$b" -v op="$op" 'BEGIN {
            ok = (op == "ge") ? x >= b : (op == "gt") ? x > b : (op == "le") ? x <= b : x < b
            print ok ? "**met**" : "**missed**" }')
    fi
    echo "| $d | $x | $verdict |"
}

per_round() { # case array format-function server -> sorted per-round values
    local -n a=$2
    local v out=()
    for v in $(tr ',' '\n' <<<"${a[$4,$1]:-}" | { grep . || true; } | sort -g); do
        out+=("$($3 "$1" "$v")")
    done
    local IFS=,
    echo "${out[*]}" | sed 's/,/, /g'
}

{
    echo "Run $START: loopback, root on tmpfs ($SHM), medians of $RUNS interleaved rounds; MB = 10^6 bytes."
    echo "Machine: $(nproc) cores, $(uname -r); load average before/after: $LOAD_BEFORE / $LOAD_AFTER;"
    echo "compiler processes (rustc, cc1, ld, clang) seen before/after: $BUSY_BEFORE / $BUSY_AFTER."
    echo "iperf3 loopback, one stream: ${R[iperf3]:-–} MB/s.${WASMFTPD_LOG:+ wasmftpd run with RUST_LOG=$WASMFTPD_LOG.}"
    echo "Server CPU counted with $CPU_HOW."
    echo "Password check ($PASS_LEN-character password): SHA-512 crypt for vsftpd, pure-ftpd and wasmftpd; plain compare for"
    echo "libunftp $LIBUNFTP_VERSION, pyftpdlib $PYFTPDLIB_VERSION and wasmftpd-trivial-auth (${TRIVIAL_AUTH_PLUGIN:-builtin auth-static, anonymous: no check})."
    echo
    echo "Throughput (higher is better; LIST: seconds, lower is better):"
    echo
    table rate_unit R rate_fmt
    echo
    echo "Server CPU per operation, whole process tree (lower is better):"
    echo
    table cpu_unit RC cpu_fmt
    echo
    echo "Client CPU per operation (what the client took from the two cores):"
    echo
    table cpu_unit RK cpu_fmt
    echo
    echo "wasmftpd against each peer: throughput ratio (higher is better) / server CPU ratio"
    echo "(lower is better). Logins compare within one kind of password check: wasmftpd"
    echo "(SHA-512) with vsftpd and pure-ftpd, wasmftpd-trivial-auth with the plain-compare peers."
    echo
    hdr="| test | client"; sep="|---|---"
    for p in "${PEERS[@]}"; do
        if has_results "$p"; then hdr+=" | vs $p"; sep+="|---:"; fi
    done
    echo "$hdr |"; echo "$sep|"
    for cs in "${CASES[@]}"; do
        for s in wasmftpd wasmftpd-trivial-auth; do
            [ -n "${R[$s,$cs]:-}" ] || continue
            row="| $(case_name "$cs")$([ "$s" = wasmftpd ] || echo " (trivial auth)")"
            any=0
            for p in "${PEERS[@]}"; do
                has_results "$p" || continue
                if comparable "$cs" "$s" "$p" && [ -n "${R[$p,$cs]:-}" ]; then
                    row+=" | $(speed_ratio "$cs" "${R[$s,$cs]}" "${R[$p,$cs]}") / $(cpu_ratio "${RC[$s,$cs]:-}" "${RC[$p,$cs]:-}")"
                    any=1
                else row+=" | –"; fi
            done
            [ $any = 1 ] && echo "$row |"
        done
    done
    echo
    echo "Targets (issue 15 and DESIGN.md), wasmftpd against the named peer:"
    echo
    echo "| target | ratio | result |"
    echo "|---|---:|---|"
    target "STOR $SZ with curl ≥ 1.2× pure-ftpd" wasmftpd stor:curl speed pure-ftpd ge 1.2
    target "STOR $SZ with the Python raw client ≥ 1.2× pure-ftpd" wasmftpd stor:python speed pure-ftpd ge 1.2
    target "STOR $SZ with ftpbench ≥ 1.2× pure-ftpd" wasmftpd stor:ftpbench speed pure-ftpd ge 1.2
    for k in curl python ftpbench; do
        target "server CPU per GiB received ($k) ≤ 0.7× pure-ftpd's" wasmftpd "stor:$k" cpu pure-ftpd le 0.7
    done
    target "1,000 small files with Python ftplib ≥ 1.2× pure-ftpd" wasmftpd small:python speed pure-ftpd ge 1.2
    target "server CPU per 1,000 small files (ftplib) < pure-ftpd's" wasmftpd small:python cpu pure-ftpd lt 1
    target "1,000 small files with ftpbench ≥ 1.2× pure-ftpd" wasmftpd small:ftpbench speed pure-ftpd ge 1.2
    target "server CPU per 1,000 small files (ftpbench) < pure-ftpd's" wasmftpd small:ftpbench cpu pure-ftpd lt 1
    target "SHA-512 logins, $LOGIN_CLIENTS Python clients ≥ 2.5× pure-ftpd" wasmftpd login:python speed pure-ftpd ge 2.5
    target "SHA-512 logins, ftpbench ≥ 2.5× pure-ftpd" wasmftpd login:ftpbench speed pure-ftpd ge 2.5
    for k in ftpbench curl python; do
        target "RETR $SZ ($k) ≥ vsftpd" wasmftpd "retr:$k" speed vsftpd ge 1
    done
    for k in ftpbench python; do
        target "trivial-auth logins ($k) ahead of libunftp" wasmftpd-trivial-auth "login:$k" speed libunftp gt 1
    done
    target "LIST 10k as fast as pure-ftpd" wasmftpd list:ftpbench speed pure-ftpd ge 1
    echo
    echo "Per-round values of the target columns (sorted):"
    echo
    echo "| case | server | throughput | server CPU |"
    echo "|---|---|---|---|"
    for cs in stor:curl stor:python small:python login:python; do
        for s in wasmftpd pure-ftpd; do
            [ -n "${V[$s,$cs]:-}" ] || continue
            echo "| $(case_name "$cs" | sed 's/ | /, /') | $s | $(per_round "$cs" V rate_fmt "$s") | $(per_round "$cs" C cpu_fmt "$s") |"
        done
    done
    for s in "${ORDER[@]}"; do
        [ "${STATUS[$s]:-}" = running ] || echo "- $s: ${STATUS[$s]:-not run}"
    done
    for s in "${ORDER[@]}"; do
        for cs in "${CASES[@]}"; do
            [ -z "${FAILED[$s,$cs]:-}" ] || echo "- $s, ${cs%%:*} with ${cs#*:}: ${FAILED[$s,$cs]}"
        done
    done
} | tee "${RESULTS:-/dev/null}"
if [ -n "$FTPS_REPORT" ]; then
    echo "$FTPS_REPORT"
    [ -z "${RESULTS:-}" ] || echo "$FTPS_REPORT" >>"$RESULTS"
    [ "$FTPS_FAILED" = 0 ] || exit 1
fi

for s in "${ORDER[@]}"; do
    case ${STATUS[$s]:-} in failed*) exit 1 ;; esac
done
for s in "${ORDER[@]}"; do
    for cs in "${CASES[@]}"; do [ -z "${FAILED[$s,$cs]:-}" ] || exit 1; done
done
