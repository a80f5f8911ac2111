#!/usr/bin/env bash
# Side-by-side FTP benchmark: wasmftpd vs vsftpd, pure-ftpd, libunftp and pyftpdlib,
# over loopback, roots on tmpfs, medians of RUNS runs (bench/ftpbench), plus the iperf3
# loopback limit.
#
# Usage (as root, from anywhere):
#   bench/compare.sh
# Environment:
#   SERVERS="vsftpd pure-ftpd wasmftpd libunftp pyftpdlib"
#                                         which servers, in this order. Also known:
#                                         libunftp-nagle (libunftp's own listener,
#                                         without TCP_NODELAY; logins only)
#   RUNS=5                                rounds; each round runs every test once on
#                                         every server (the first server rotates), and
#                                         the median over rounds is reported
#   LOGIN_SECS=5  LOGIN_CLIENTS=8         login test: duration per run, clients
#   PASS_LEN=12                           length of the benchmark user's password (8-70);
#                                         the SHA-512-crypt cost steps up at 16
#   TESTS=retr,stor,small,login,list      ftpbench tests
#   WASMFTPD=path                         wasmftpd binary [<repo>/target/release/wasmftpd]
#   TRIVIAL_AUTH_PLUGIN=path.wasm         auth plugin for the trivial-auth login run
#                                         (default: builtin auth-static, anonymous)
#                                         plugin (skipped when unset); its config is
#                                         TRIVIAL_AUTH_CONFIG (TOML lines under
#                                         [site.bench.auth.config]), by default a user
#                                         table with the plain-text password
#   WASMFTPD_LOG=filter                   RUST_LOG for wasmftpd (default: unset, its
#                                         default info level: 3 log lines per session);
#                                         e.g. "warn,wasmftpd::server=info" (the script
#                                         needs the server's 'listening on' line) to run
#                                         it without per-session logs like the peers
#   FTPBENCH=path                         ftpbench binary (else built with cargo into
#                                         CARGO_TARGET_DIR [<repo>/target], -p ftpbench)
#   PUREFTPD_PREFIX=/opt/pure-ftpd        where an unpacked pure-ftpd lives (see below)
#   FTPBENCH_ARGS="..."                   extra `ftpbench run` options (see ftpbench --help)
#   RESULTS=file.md                       also write the markdown tables there
#   SHM=/dev/shm                          tmpfs for the server root
#   SIZE=1073741824                       RETR/STOR file size (smaller for a smoke test)
#   PEERS_TARGET=/work/targets/peers      cargo target dir for bench/peers/unftp (built
#                                         --release --locked, only when libunftp is in
#                                         SERVERS), and home of the pyftpdlib venv
#   PYFTPDLIB_VENV=dir                    venv with pyftpdlib [$PEERS_TARGET/pyftpdlib-
#                                         <version>]; made with `python3 -m venv` and
#                                         `pip install pyftpdlib==<version>` if missing
#
# Installs what is missing with apt-get (vsftpd, iperf3, openssl). pure-ftpd and
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
# user) is created and removed again; the tmpfs root and all servers are removed or
# stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
SERVERS=${SERVERS:-"vsftpd pure-ftpd wasmftpd libunftp pyftpdlib"}
RUNS=${RUNS:-5}
LOGIN_SECS=${LOGIN_SECS:-5}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-8}
TESTS=${TESTS:-retr,stor,small,login,list}
WASMFTPD=${WASMFTPD:-$REPO/target/release/wasmftpd}
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
CREATED_USER=0
cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
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
apt_install() {
    if [ $APT_UPDATED = 0 ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
command -v openssl >/dev/null || apt_install openssl
command -v iperf3 >/dev/null || apt_install iperf3
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

declare -A V        # V[server,test] = comma-separated per-run values
declare -A R        # R[server,test] = median
declare -A STATUS   # STATUS[server] = running | skipped: why | failed: why
declare -A PORT     # PORT[server]
declare -A STESTS   # STESTS[server] = ftpbench tests for that server
declare -A LOGIN_AS # LOGIN_AS[server] = user for that server, when not $BENCH_USER
ORDER=()

add_server() { # label port tests
    PORT[$1]=$2; STESTS[$1]=$3; STATUS[$1]=running
}

bench_round() { # label round
    local label=$1 round=$2 out=$WORK/$1.out warm=()
    [ "$round" -gt 1 ] && warm=(--no-warmup)
    log "round $round: ftpbench against $label on port ${PORT[$label]} (${STESTS[$label]})"
    # shellcheck disable=SC2086
    if ! "$FTPBENCH" run --port "${PORT[$label]}" --user "${LOGIN_AS[$label]:-$BENCH_USER}" --pass "$PASS" \
        --label "$label" --runs 1 --tests "${STESTS[$label]}" --stor-size "$SIZE" \
        --login-secs "$LOGIN_SECS" --login-clients "$LOGIN_CLIENTS" "${warm[@]}" \
        ${FTPBENCH_ARGS:-} >"$out"; then
        STATUS[$label]="failed in round $round: see the ftpbench error above"
    fi
    local _ s t m
    while read -r _ s t _ m _; do
        V[${s#server=},${t#test=}]+=",${m#median=}"
    done < <(grep '^result ' "$out")
    cat "$out" >&2
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
    vsftpd "$HERE/vsftpd.conf" -olisten_port="$port" -olocal_root="$ROOT" \
        -opasv_min_port=41000 -opasv_max_port=41999 >"$WORK/vsftpd.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
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
    "$PUREFTPD" "${flags[@]}" -S "127.0.0.1,$port" -l "puredb:$WORK/pureftpd.pdb" \
        -p 42000:42999 >"$WORK/pure-ftpd.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    if wait_port "$pid" "$port" "$WORK/pure-ftpd.log"; then add_server pure-ftpd "$port" "$TESTS"
    else STATUS[pure-ftpd]="failed: did not start (log above)"; fi
}

wasmftpd_config() { # file passive-range auth-plugin auth-config-lines
    cat >"$1" <<EOF
[server]
listen = ["127.0.0.1:0"]
passive_ports = "$2"
login_failure_delay = "0s"
max_connections = 2000
max_connections_per_ip = 2000

[site.bench]
[site.bench.auth]
plugin = "$3"
[site.bench.auth.config]
$4
[site.bench.storage]
plugin = "builtin:storage-fs"
[site.bench.storage.dirs]
"/" = "$ROOT"
EOF
}

start_wasmftpd_one() { # label config tests
    local log=$WORK/$1.log i port="" pid
    env NO_COLOR=1 ${WASMFTPD_LOG:+"RUST_LOG=$WASMFTPD_LOG"} "$WASMFTPD" serve --config "$2" --listen 127.0.0.1:0 >"$log" 2>&1 &
    pid=$!; PIDS+=("$pid")
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
    UNFTP_PEER_PASS=$PASS "$UNFTP_PEER" --root "$ROOT" --port "$port" --user "$BENCH_USER" \
        --passive "$range" "$@" >"$WORK/$label.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_port "$pid" "$port" "$WORK/$label.log"; then add_server "$label" "$port" "$tests"
    else STATUS[$label]="skipped: did not start (log above)"; fi
}

start_pyftpdlib() {
    ORDER+=(pyftpdlib)
    if [ -n "${PEER_SKIP[pyftpdlib]:-}" ]; then STATUS[pyftpdlib]=${PEER_SKIP[pyftpdlib]}; return; fi
    local port pid
    port=$(free_port 2161)
    PYFTPD_PASS=$PASS "$PYFTPDLIB_VENV/bin/python" "$HERE/peers/pyftpd.py" --root "$ROOT" \
        --port "$port" --user "$BENCH_USER" --passive 45000-45999 >"$WORK/pyftpdlib.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_port "$pid" "$port" "$WORK/pyftpdlib.log"; then add_server pyftpdlib "$port" "$TESTS"
    else STATUS[pyftpdlib]="skipped: did not start (log above)"; fi
}

# --- run ---------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_BEFORE=$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|rust-lld|clang)' || true)
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start_iperf
for s in $SERVERS; do
    case $s in
        vsftpd) start_vsftpd ;;
        pure-ftpd) start_pureftpd ;;
        wasmftpd) start_wasmftpd ;;
        libunftp) start_libunftp libunftp 44000-44999 "$TESTS" ;;
        libunftp-nagle) start_libunftp libunftp-nagle 46000-46999 login --no-nodelay ;;
        pyftpdlib) start_pyftpdlib ;;
        *) die "unknown server $s" ;;
    esac
done
# Rounds: every server once per round, the starting server rotating, so that a load
# change on the machine (other builds) hits all servers alike.
N=${#ORDER[@]}
for r in $(seq "$RUNS"); do
    iperf_round
    for k in $(seq 0 $((N - 1))); do
        s=${ORDER[$(((k + r - 1) % N))]}
        [ "${STATUS[$s]:-}" = running ] && bench_round "$s" "$r"
    done
done
for key in "${!V[@]}"; do R[$key]=$(median <<<"${V[$key]}"); done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_AFTER=$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|rust-lld|clang)' || true)

# --- report ------------------------------------------------------------------------
TESTS_ALL=(retr stor small login list)
if [ "$SIZE" = 1073741824 ]; then SZ="1 GiB"; else SZ="$SIZE B"; fi
HEAD="| server | RETR $SZ (MB/s) | STOR $SZ (MB/s) | 1,000 × 4 KiB STOR+RETR+DELE (files/s) | connect+login+QUIT, $LOGIN_CLIENTS clients (/s) | LIST 10,000 entries (s) |"
SEP="|---|---:|---:|---:|---:|---:|"
fmt() { # test value
    [ -z "$2" ] && { echo "–"; return; }
    case $1 in list) awk -v v="$2" 'BEGIN{printf "%.4f", v}' ;; *) awk -v v="$2" 'BEGIN{printf "%.0f", v}' ;; esac
}
# Ratio "higher is better": rates divide, LIST times divide the other way.
ratio() { # test value reference
    [ -z "$2" ] || [ -z "$3" ] && { echo "–"; return; }
    case $1 in
        list) awk -v a="$2" -v b="$3" 'BEGIN{printf "%.2f×", b/a}' ;;
        *) awk -v a="$2" -v b="$3" 'BEGIN{printf "%.2f×", a/b}' ;;
    esac
}
PEERS=(vsftpd pure-ftpd libunftp libunftp-nagle pyftpdlib)
has_results() { # server: measured at least one test
    local t
    for t in "${TESTS_ALL[@]}"; do [ -n "${R[$1,$t]:-}" ] && return 0; done
    return 1
}
# Login rates are only compared within one kind of password check: SHA-512 crypt
# (vsftpd, pure-ftpd, wasmftpd) or none / a plain compare (the rest).
check_kind() { case $1 in libunftp | libunftp-nagle | pyftpdlib | wasmftpd-trivial-auth) echo plain ;; *) echo crypt ;; esac; }
comparable() { [ "$1" != login ] || [ "$(check_kind "$2")" = "$(check_kind "$3")" ]; } # test a b
best_peer() { # test server -> "value name" of the best other peer (logins: same check kind)
    local t=$1 s=$2 b="" n="" v p better
    for p in "${PEERS[@]}"; do
        v=${R[$p,$t]:-}
        [ -z "$v" ] || [ "$p" = "$s" ] && continue
        comparable "$t" "$s" "$p" || continue
        if [ -z "$b" ]; then better=1
        elif [ "$t" = list ]; then better=$(awk -v a="$v" -v b="$b" 'BEGIN{print (a<b)?1:0}')
        else better=$(awk -v a="$v" -v b="$b" 'BEGIN{print (a>b)?1:0}'); fi
        [ "$better" = 1 ] && { b=$v; n=$p; }
    done
    [ -z "$b" ] || echo "$b $n"
}

{
    echo "Run $START: loopback, root on tmpfs ($SHM), medians of $RUNS interleaved rounds; MB = 10^6 bytes."
    echo "Machine: $(nproc) cores, $(uname -r); load average before/after: $LOAD_BEFORE / $LOAD_AFTER;"
    echo "compiler processes (rustc, cc1, ld, clang) seen before/after: $BUSY_BEFORE / $BUSY_AFTER."
    echo "iperf3 loopback, one stream: ${R[iperf3,tcp]:-–} MB/s.${WASMFTPD_LOG:+ wasmftpd run with RUST_LOG=$WASMFTPD_LOG.}"
    echo
    echo "$HEAD"; echo "$SEP"
    for s in "${ORDER[@]}"; do
        if ! has_results "$s"; then
            echo "| $s | ${STATUS[$s]:-not run} | | | | |"; continue
        fi
        row="| $s"
        for t in "${TESTS_ALL[@]}"; do row+=" | $(fmt "$t" "${R[$s,$t]:-}")"; done
        echo "$row |"
    done
    echo
    echo "Password check ($PASS_LEN-character password): SHA-512 crypt for vsftpd, pure-ftpd and wasmftpd; plain compare for"
    echo "libunftp $LIBUNFTP_VERSION, pyftpdlib $PYFTPDLIB_VERSION and wasmftpd-trivial-auth (${TRIVIAL_AUTH_PLUGIN:-builtin auth-static, anonymous: no check})."
    echo
    echo "Ratios (higher is better; for LIST, reference time / this time). Logins are only"
    echo "compared within one kind of password check (– otherwise); the best peer per column"
    echo "is named in brackets."
    echo
    echo "| server | vs | RETR | STOR | small files | logins | LIST |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for s in "${ORDER[@]}"; do
        has_results "$s" || continue
        refs=(vsftpd best)
        if [[ $s == wasmftpd* ]]; then
            for p in libunftp libunftp-nagle pyftpdlib; do
                has_results "$p" && refs+=("$p")
            done
        fi
        for ref in "${refs[@]}"; do
            [ "$ref" = "$s" ] && continue
            row="| $s | $([ "$ref" = best ] && echo "best peer" || echo "$ref")"
            any=0
            for t in "${TESTS_ALL[@]}"; do
                if [ "$ref" = best ]; then
                    read -r r n <<<"$(best_peer "$t" "$s")" || true
                    c=$(ratio "$t" "${R[$s,$t]:-}" "$r")
                    [ "$c" != "–" ] && [ -n "$n" ] && c+=" ($n)"
                elif comparable "$t" "$s" "$ref"; then
                    c=$(ratio "$t" "${R[$s,$t]:-}" "${R[$ref,$t]:-}")
                else c="–"; fi
                row+=" | $c"
                [ "$c" = "–" ] || any=1
            done
            [ $any = 0 ] || echo "$row |"
        done
    done
    for s in "${ORDER[@]}"; do
        [ "${STATUS[$s]:-}" = running ] || echo "- $s: ${STATUS[$s]:-not run}"
    done
} | tee "${RESULTS:-/dev/null}"

for s in "${ORDER[@]}"; do
    case ${STATUS[$s]:-} in failed*) exit 1 ;; esac
done
