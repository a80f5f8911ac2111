#!/usr/bin/env bash
# What metrics and the transfer log cost (issue 13: at most 3 % of small-file
# throughput and of trivial-auth logins/s). Runs bench/compare.sh against
# wasmftpd alone, alternating ROUNDS times between the plain config and one with
# the admin listener and a JSON transfer log on tmpfs, then prints medians and
# ratios of throughput and of server CPU per operation. Metrics are always
# counted (there is no switch for them: a build before issue 13 would be the
# baseline for that); what the "with" run adds is the transfer log's
# formatting and writing.
#
# Usage (as root, on a quiet machine): bench/ops-cost.sh
# Environment: ROUNDS=3, WASMFTPD=path (default target/release/wasmftpd), and
# compare.sh's own knobs (LOGIN_SECS, CLIENTS, ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG=${SHM:-/dev/shm}/wasmftpd-ops-cost.log
# Port 0: compare.sh starts two wasmftpd servers (SHA-512 and trivial auth).
WITH="transfer_log = \"$LOG\"
[server.admin]
listen = \"127.0.0.1:0\""

for round in $(seq "$ROUNDS"); do
    for variant in without with; do
        extra=""
        [ "$variant" = with ] && extra=$WITH
        WASMFTPD_SERVER_EXTRA=$extra SERVERS=wasmftpd TESTS=small,login CLIENTS=ftpbench RUNS=1 \
            RAW="$WORK/$variant.$round.tsv" bash "$HERE/compare.sh" >"$WORK/$variant.$round.out" 2>&1 ||
            { cat "$WORK/$variant.$round.out"; exit 1; }
        rm -f "$LOG"
    done
done

python3 - "$WORK" "$ROUNDS" <<'PY'
import csv, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def rows(variant):
    out = {}
    for r in range(1, rounds + 1):
        with open(f"{work}/{variant}.{r}.tsv") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                key = (row["server"], row["test"])
                ops = float(row["ops"] or 0) or 1
                out.setdefault(key, []).append((float(row["value"]), float(row["server_usec"]) / ops))
    return out
without, with_ = rows("without"), rows("with")
print("| case | without | with | ratio | server CPU µs/op without | with | ratio |")
print("|---|---|---|---|---|---|---|")
for key in sorted(without):
    if key not in with_:
        continue
    a = statistics.median(v for v, _ in without[key]); b = statistics.median(v for v, _ in with_[key])
    ca = statistics.median(c for _, c in without[key]); cb = statistics.median(c for _, c in with_[key])
    print(f"| {key[0]} {key[1]} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | {ca:,.1f} | {cb:,.1f} | {cb / ca:.3f} |")
PY
