#!/usr/bin/env bash
# FTPS side by side (issue 10). One command, as root:
#   bench/ftps.sh              (= SERVERS="vsftpd pure-ftpd wasmftpd" TESTS=ftps bench/compare.sh)
#   SIZE=16777216 RUNS=1 LOGIN_SECS=1 bench/ftps.sh     a smoke test
# compare.sh's environment applies (RUNS, SIZE, LOGIN_SECS, LOGIN_CLIENTS, WASMFTPD,
# RESULTS, RAW, ...). Also sourced by bench/compare.sh when TESTS contains `ftps`
# next to clear-text tests. Uses compare.sh's machinery: its
# tmpfs root with big.bin, its benchmark user and SHA-512-crypt password, its
# cgroups for CPU accounting, its cleanup.
#
# Servers (those of SERVERS among vsftpd, pure-ftpd, wasmftpd), each with the same
# self-signed RSA-2048 certificate, TLS required for logins and data:
#   vsftpd-tls     ssl_enable, force_local_logins_ssl, force_local_data_ssl,
#                  require_ssl_reuse (its default)
#   pure-ftpd-tls  -Y 3 (TLS on control and data), -2 cert,key
#   wasmftpd-tls   [server.tls] required = true (require_session_reuse: default)
# Clients, TLS 1.3 (whatever cipher suite the client prefers; OpenSSL's first is
# TLS_AES_256_GCM_SHA384, for every server alike):
#   curl --ssl-reqd -k --tlsv1.3      RETR and STOR of SIZE bytes
#   bench/ftps_clients.py (ssl)       RETR and STOR, data connections resuming the
#                                     control connection's session; logins with
#                                     LOGIN_CLIENTS processes, each connect + AUTH TLS
#                                     (full handshake) + USER + PASS + QUIT
# Reported: throughput, server CPU per GiB (per 1,000 logins), client CPU, ratios,
# and issue 10's targets (RETR >= 2x the better of vsftpd and pure-ftpd, STOR >=
# 1.5x, TLS logins >= 2x pure-ftpd).
#
# compare.sh calls ftps_run (report on stdout, progress on stderr) before its
# clear-text rounds, then ftps_stop, and prints the report after its own.
# FTPS_FAILED is 1 when a server or a case failed.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    SERVERS=${SERVERS:-"vsftpd pure-ftpd wasmftpd"} TESTS=${TESTS:-ftps} \
        exec "$(dirname "$0")/compare.sh" "$@"
fi

FTPS_CASES=(retr:curl retr:python stor:curl stor:python login:python)
declare -A FV FC FK FR FRC FRK FSTATUS FPORT FFAILED
FORDER=()
FTPS_FAILED=0

ftps_cert() {
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
    chmod 600 "$WORK/tls/key.pem"
}

ftps_started() { # label pid port log
    local pid=$2
    PIDS+=("$pid"); SPID[$1]=$pid; FORDER+=("$1")
    if wait_port "$pid" "$3" "$4"; then FPORT[$1]=$3; FSTATUS[$1]=running
    else FSTATUS[$1]="failed: did not start (log above)"; fi
}

ftps_start_vsftpd() {
    command -v vsftpd >/dev/null || { FORDER+=(vsftpd-tls); FSTATUS[vsftpd-tls]="skipped: vsftpd not installed"; return; }
    local port; port=$(free_port 2221)
    in_cgroup vsftpd-tls vsftpd "$HERE/vsftpd.conf" -olisten_port="$port" -olocal_root="$ROOT" \
        -opasv_min_port=47000 -opasv_max_port=47999 \
        -ossl_enable=YES -orsa_cert_file="$WORK/tls/cert.pem" -orsa_private_key_file="$WORK/tls/key.pem" \
        -oforce_local_logins_ssl=YES -oforce_local_data_ssl=YES -orequire_ssl_reuse=YES \
        -ossl_request_cert=NO -ossl_sslv2=NO -ossl_sslv3=NO >"$WORK/vsftpd-tls.log" 2>&1 &
    ftps_started vsftpd-tls $! "$port" "$WORK/vsftpd-tls.log"
}

ftps_start_pureftpd() {
    [ -x "$PUREFTPD" ] || { FORDER+=(pure-ftpd-tls); FSTATUS[pure-ftpd-tls]="skipped: pure-ftpd not available"; return; }
    local port uid gid flags=() f
    port=$(free_port 2231)
    uid=$(id -u "$BENCH_USER"); gid=$(id -g "$BENCH_USER")
    printf '%s\n%s\n' "$PASS" "$PASS" |
        "$PUREPW" useradd "$BENCH_USER" -u "$uid" -g "$gid" -d "$ROOT" -f "$WORK/pureftpd-tls.passwd" >/dev/null
    awk -F: -v OFS=: -v u="$BENCH_USER" -v h="$HASH" '$1==u{$2=h}1' "$WORK/pureftpd-tls.passwd" >"$WORK/pureftpd-tls.passwd2"
    mv "$WORK/pureftpd-tls.passwd2" "$WORK/pureftpd-tls.passwd"
    "$PUREPW" mkdb "$WORK/pureftpd-tls.pdb" -f "$WORK/pureftpd-tls.passwd"
    # The clear-text flags, with its "-Y 0" (no TLS) replaced by "-Y 3".
    while IFS= read -r f; do flags+=("$f"); done < <(grep -v '^[[:space:]]*\(#\|$\)' "$HERE/pure-ftpd.flags")
    for i in "${!flags[@]}"; do
        if [ "${flags[$i]}" = -Y ]; then flags[$((i + 1))]=3; fi
    done
    in_cgroup pure-ftpd-tls "$PUREFTPD" "${flags[@]}" -2 "$WORK/tls/cert.pem,$WORK/tls/key.pem" \
        -S "127.0.0.1,$port" -l "puredb:$WORK/pureftpd-tls.pdb" -p 48000:48999 >"$WORK/pure-ftpd-tls.log" 2>&1 &
    ftps_started pure-ftpd-tls $! "$port" "$WORK/pure-ftpd-tls.log"
}

ftps_start_wasmftpd() {
    FORDER+=(wasmftpd-tls)
    [ -x "$WASMFTPD" ] || { FSTATUS[wasmftpd-tls]="skipped: no binary at $WASMFTPD"; return; }
    local log=$WORK/wasmftpd-tls.log conf=$WORK/wasmftpd-tls.toml pid port="" i
    cat >"$conf" <<EOF
[server]
listen = ["127.0.0.1:0"]
passive_ports = "49000-49999"
login_failure_delay = "0s"
max_connections = 2000
max_connections_per_ip = 2000
[server.tls]
certificate = "$WORK/tls/cert.pem"
key = "$WORK/tls/key.pem"
required = true

[site.bench.auth]
plugin = "builtin:auth-static"
[site.bench.auth.config.users.$BENCH_USER]
password = "$HASH"
home = "/"
[site.bench.storage]
plugin = "builtin:storage-fs"
[site.bench.storage.dirs]
"/" = "$ROOT"
EOF
    in_cgroup wasmftpd-tls env NO_COLOR=1 ${WASMFTPD_LOG:+"RUST_LOG=$WASMFTPD_LOG"} "$WASMFTPD" serve --config "$conf" >"$log" 2>&1 &
    pid=$!; PIDS+=("$pid"); SPID[wasmftpd-tls]=$pid
    for i in $(seq 300); do
        port=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'listening on 127\.0\.0\.1:[0-9]*' | head -1 | sed 's/.*://' || true)
        [ -n "$port" ] && { FPORT[wasmftpd-tls]=$port; FSTATUS[wasmftpd-tls]=running; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "wasmftpd-tls did not start; its log:"; cat "$log" >&2
    FSTATUS[wasmftpd-tls]="failed: did not start (log above)"
}

# curl as a user runs it, over TLS 1.3; prints a result line.
ftps_curl() { # server test
    local url="ftp://127.0.0.1:${FPORT[$1]}" w bytes pre total
    local tls=(--ssl-reqd -k --tlsv1.3 -u "$BENCH_USER:$PASS")
    case $2 in
        retr) w=$(in_cgroup client curl -sS --fail "${tls[@]}" -o /dev/null \
                -w '%{size_download} %{time_pretransfer} %{time_total}' "$url/big.bin") || return 1 ;;
        stor) w=$(in_cgroup client curl -sS --fail "${tls[@]}" -T "$ROOT/big.bin" \
                -w '%{size_upload} %{time_pretransfer} %{time_total}' "$url/ftps-stor-$1.bin") || return 1 ;;
    esac
    read -r bytes pre total <<<"$w"
    [ "$bytes" = "$SIZE" ] || { log "curl $2 against $1 moved $bytes bytes, expected $SIZE"; return 1; }
    awk -v s="$1" -v t="$2" -v b="$bytes" -v p="$pre" -v e="$total" 'BEGIN {
        v = b / 1e6 / (e - p); printf "result server=%s test=%s unit=MB/s median=%.1f runs=%.1f ops=%d\n", s, t, v, v, b }'
}

ftps_case() { # server case round
    local s=$1 cs=$2 r=$3 t=${2%%:*} k=${2#*:} out=$WORK/ftps-case.out ok=1 s0 s1 c0 c1 value ops args=()
    log "FTPS round $r: $t with $k against $s"
    s0=$(server_usec "$s"); c0=$(client_usec)
    case $k in
        curl) ftps_curl "$s" "$t" >"$out" || ok=0 ;;
        python)
            case $t in
                retr) args=(--path /big.bin) ;;
                stor) args=(--size "$SIZE" --path "/ftps-clients-stor-$s.bin") ;;
                login) args=(--secs "$LOGIN_SECS" --clients "$LOGIN_CLIENTS") ;;
            esac
            in_cgroup client "$PYTHON" "$HERE/ftps_clients.py" "$t" --port "${FPORT[$s]}" --user "$BENCH_USER" \
                --pass "$PASS" --label "$s" "${args[@]}" >"$out" || ok=0 ;;
    esac
    s1=$(server_usec "$s"); c1=$(client_usec)
    if [ "$k" = curl ] && [ "$t" = stor ]; then
        # Not measured: what the server wrote, then room for the next upload.
        local held; held=$(stat -c %s "$ROOT/ftps-stor-$s.bin" 2>/dev/null || echo 0)
        [ "$held" = "$SIZE" ] || { log "$s holds $held bytes after curl's STOR of $SIZE"; ok=0; }
        rm -f -- "$ROOT/ftps-stor-$s.bin"
    fi
    read -r value ops < <(awk '/^result / { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                                           print f["median"], f["ops"] }' "$out") || true
    if [ $ok = 0 ] || [ -z "${ops:-}" ]; then
        FFAILED[$s,$cs]="failed in round $r (error above)"
        log "$s: $t with $k failed; not run again"
        return 0
    fi
    FV[$s,$cs]+=",$value"
    FC[$s,$cs]+=",$(cpu_per_unit "$t" "$ops" $((s1 - s0)))"
    FK[$s,$cs]+=",$(cpu_per_unit "$t" "$ops" $((c1 - c0)))"
    log "  $value $(rate_unit "$t"); server CPU $(cpu_per_unit "$t" "$ops" $((s1 - s0))) $(cpu_unit "$t")"
    [ -z "${RAW:-}" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$r" "$s" "ftps-$t" "$k" "$value" "$ops" $((s1 - s0)) $((c1 - c0)) >>"$RAW"
}

ftps_ratio() { # a b -> a/b as "x.xx×"
    [ -z "$1" ] || [ -z "$2" ] && { echo "–"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f×", a / b; else print "–" }'
}

ftps_target() { # description case peer-expression bound
    local d=$1 cs=$2 bound=$4 ours=${FR[wasmftpd-tls,$2]:-} theirs="" p x verdict
    for p in $3; do # the better of the named peers
        local v=${FR[$p,$cs]:-}
        [ -n "$v" ] || continue
        if [ -z "$theirs" ] || awk -v a="$v" -v b="$theirs" 'BEGIN{exit !(a > b)}'; then theirs=$v; fi
    done
    x=$(ftps_ratio "$ours" "$theirs")
    if [ "$x" = "–" ]; then verdict="not measured"
    else verdict=$(awk -v x="${x%×}" -v b="$bound" 'BEGIN{print (x >= b) ? "**met**" : "**missed**"}'); fi
    echo "| $d | $x | $verdict |"
}

ftps_run() {
    local s cs r k N
    ftps_cert
    for s in $SERVERS; do
        case $s in
            vsftpd) ftps_start_vsftpd ;;
            pure-ftpd) ftps_start_pureftpd ;;
            wasmftpd) ftps_start_wasmftpd ;;
        esac
    done
    N=${#FORDER[@]}
    for r in $(seq "$RUNS"); do
        for cs in "${FTPS_CASES[@]}"; do
            [[ ",$CLIENTS," == *,${cs#*:},* ]] || continue
            for k in $(seq 0 $((N - 1))); do
                s=${FORDER[$(((k + r - 1) % N))]}
                [ "${FSTATUS[$s]:-}" = running ] && [ -z "${FFAILED[$s,$cs]:-}" ] && ftps_case "$s" "$cs" "$r"
            done
        done
    done
    for key in "${!FV[@]}"; do
        FR[$key]=$(median <<<"${FV[$key]}")
        FRC[$key]=$(median <<<"${FC[$key]:-}")
        FRK[$key]=$(median <<<"${FK[$key]:-}")
    done
    local sz="$SIZE B"; [ "$SIZE" = 1073741824 ] && sz="1 GiB"
    ftps_name() {
        case $1 in
            retr:*) printf 'RETR %s' "$sz" ;; stor:*) printf 'STOR %s' "$sz" ;;
            login:*) printf 'connect+AUTH TLS+login+QUIT, %s clients' "$LOGIN_CLIENTS" ;;
        esac
        case $1 in *:curl) printf ' | curl --ssl-reqd' ;; login:python) printf ' | Python ssl, processes' ;; *) printf ' | Python ssl' ;; esac
    }
    ftps_table() { # unit-function array decimals
        local -n arr=$2
        local hdr="| test | client | unit" sep="|---|---|---" row
        for s in "${FORDER[@]}"; do hdr+=" | $s"; sep+="|---:"; done
        echo "$hdr |"; echo "$sep|"
        for cs in "${FTPS_CASES[@]}"; do
            row="| $(ftps_name "$cs") | $($1 "${cs%%:*}")"
            for s in "${FORDER[@]}"; do
                local v=${arr[$s,$cs]:-}
                if [ -n "$v" ]; then row+=" | $(awk -v v="$v" -v d="$3" 'BEGIN{printf "%.*f", d, v}')"; else row+=" | –"; fi
            done
            echo "$row |"
        done
    }
    echo
    echo "FTPS (explicit AUTH TLS, PROT P, TLS 1.3, RSA-2048 certificate), medians of $RUNS interleaved rounds:"
    echo
    ftps_table rate_unit FR 0
    echo
    echo "Server CPU per operation, whole process tree (lower is better):"
    echo
    ftps_table cpu_unit FRC 3
    echo
    echo "Client CPU per operation:"
    echo
    ftps_table cpu_unit FRK 3
    echo
    echo "wasmftpd-tls against each peer: throughput ratio (higher is better) / server CPU ratio (lower is better):"
    echo
    echo "| test | client | vs vsftpd-tls | vs pure-ftpd-tls |"
    echo "|---|---|---:|---:|"
    for cs in "${FTPS_CASES[@]}"; do
        [ -n "${FR[wasmftpd-tls,$cs]:-}" ] || continue
        row="| $(ftps_name "$cs")"
        for p in vsftpd-tls pure-ftpd-tls; do
            row+=" | $(ftps_ratio "${FR[wasmftpd-tls,$cs]}" "${FR[$p,$cs]:-}") / $(ftps_ratio "${FRC[wasmftpd-tls,$cs]:-}" "${FRC[$p,$cs]:-}")"
        done
        echo "$row |"
    done
    echo
    echo "Targets (issue 10), wasmftpd-tls against the better of the named peers:"
    echo
    echo "| target | ratio | result |"
    echo "|---|---:|---|"
    for k in curl python; do
        ftps_target "RETR $sz over TLS ($k) ≥ 2× the better of vsftpd and pure-ftpd" "retr:$k" "vsftpd-tls pure-ftpd-tls" 2
        ftps_target "STOR $sz over TLS ($k) ≥ 1.5× the better of vsftpd and pure-ftpd" "stor:$k" "vsftpd-tls pure-ftpd-tls" 1.5
    done
    ftps_target "TLS logins/s (Python, $LOGIN_CLIENTS processes) ≥ 2× pure-ftpd" login:python pure-ftpd-tls 2
    for s in "${FORDER[@]}"; do
        case ${FSTATUS[$s]:-} in running) ;; failed*) FTPS_FAILED=1; echo "- $s: ${FSTATUS[$s]}" ;; *) echo "- $s: ${FSTATUS[$s]:-not run}" ;; esac
        for cs in "${FTPS_CASES[@]}"; do
            [ -z "${FFAILED[$s,$cs]:-}" ] || { FTPS_FAILED=1; echo "- $s, ${cs%%:*} with ${cs#*:}: ${FFAILED[$s,$cs]}"; }
        done
    done
}

# Stops the FTPS servers (and their session processes), so they do not share
# the machine with the next rounds. A server that ignores SIGTERM is killed
# after 5 s.
ftps_stop() {
    local s pid killer
    for s in "${FORDER[@]}"; do
        pid=${SPID[$s]:-}
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        (sleep 5; kill -KILL "$pid" 2>/dev/null) &
        killer=$!
        wait "$pid" 2>/dev/null || true
        kill "$killer" 2>/dev/null || true
        wait "$killer" 2>/dev/null || true
        [ -z "$CG" ] || [ ! -f "$CG/$s/cgroup.kill" ] || echo 1 >"$CG/$s/cgroup.kill" 2>/dev/null || true
        # Reaped: the cleanup at exit must not wait for it again.
        local keep=() p
        for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
        PIDS=("${keep[@]}")
    done
    return 0
}
