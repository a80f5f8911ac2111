#!/usr/bin/env python3
"""Memory and descriptors of many idle logged-in sessions (issue 14, DESIGN's
"10,000 idle logged-in sessions held in under 1 GiB").

Starts wasmftpd on loopback with auth-static and storage-fs, logs in N
sessions that each run `CWD /` and `PWD` (so each has live auth and storage
plugin instances), and leaves them idle. Prints the server's resident memory
and open descriptors before and with the sessions, per session, and checks a
fresh login still works beside them. Not a CI test: run it by hand.

    python3 bench/idle_sessions.py [--sessions 10000] [--binary target/release/wasmftpd]
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_until(sock, code, buffer=b""):
    """Reads replies until a line starting with `code ` arrives."""
    while True:
        for line in buffer.split(b"\r\n"):
            if line.startswith(code + b" "):
                return buffer
            if line[:1] in (b"4", b"5"):
                raise RuntimeError(f"server said {line!r}")
        data = sock.recv(4096)
        if not data:
            raise RuntimeError(f"closed before {code!r}: {buffer!r}")
        buffer += data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--binary", default=str(REPO / "target/release/wasmftpd"))
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sessions + 500), hard))

    work = Path(tempfile.mkdtemp(prefix="idle-sessions-"))
    root = work / "root"
    root.mkdir()
    # SHA-512 crypt (openssl default rounds): fast enough for 10,000 logins.
    password_hash = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", "idlebench", "secret"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    config = work / "wasmftpd.toml"
    config.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
max_connections = {args.sessions + 100}
max_connections_per_ip = {args.sessions + 100}
idle_timeout = "1h"
cache_dir = "{work / 'cache'}"

[site.main.auth]
plugin = "builtin:auth-static"
[site.main.auth.config.users.bench]
password = "{password_hash}"
[site.main.storage]
plugin = "builtin:storage-fs"
[site.main.storage.dirs]
"/" = "{root}"
""")
    # "listening on" is an info line of the server module.
    env = dict(os.environ, RUST_LOG="warn,wasmftpd::server=info")
    server = subprocess.Popen(
        [args.binary, "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        port = None
        for line in server.stdout:
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1])
                break
            print(line, end="", file=sys.stderr)
        if port is None:
            raise RuntimeError("server did not start")

        def session():
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            buffer = read_until(s, b"220")
            s.sendall(b"USER bench\r\nPASS secret\r\nCWD /\r\nPWD\r\n")
            read_until(s, b"257", buffer)
            return s

        warm = session()
        time.sleep(1)
        base_rss, base_fds = rss_kib(server.pid), open_fds(server.pid)
        started = time.monotonic()
        sessions = [warm]
        for i in range(args.sessions - 1):
            sessions.append(session())
            if (i + 1) % 2000 == 0:
                print(f"  {i + 1} sessions...", file=sys.stderr)
        took = time.monotonic() - started
        time.sleep(2)
        rss, fds = rss_kib(server.pid), open_fds(server.pid)
        t0 = time.monotonic()
        session().close()
        fresh_ms = (time.monotonic() - t0) * 1000
        n = args.sessions
        print(f"sessions: {n} logged in, CWD / + PWD each, idle (opened in {took:.1f} s)")
        print(f"server RSS: {base_rss / 1024:.0f} MiB with 1 session, {rss / 1024:.0f} MiB with {n}"
              f" ({(rss - base_rss) / (n - 1):.1f} KiB per session); goal < 1024 MiB: "
              f"{'met' if rss < 1024 * 1024 else 'MISSED'}")
        print(f"server descriptors: {base_fds} with 1 session, {fds} with {n}"
              f" ({(fds - base_fds) / (n - 1):.2f} per session)")
        print(f"a fresh login beside them: {fresh_ms:.0f} ms")
        for s in sessions:
            s.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
