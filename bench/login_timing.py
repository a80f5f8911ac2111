#!/usr/bin/env python3
"""Login refusal timing of auth-static (issue 14, "no user enumeration"): an
unknown user, a known user with a wrong password and a disabled account with
its right password must take the same time, or an attacker learns which
accounts exist.

Starts wasmftpd on loopback with auth-static (argon2id hashes from
`wasmftpd hash-password`, the default cost), then times USER+PASS round trips
on a fresh connection each, the three cases interleaved so that load on the
machine hits them alike. Prints the median of each, and each median's ratio to
the wrong-password one (goal: within 10 %). Not a CI test: run it by hand, on
a quiet machine for figures worth recording.

    python3 bench/login_timing.py [--attempts 200] [--binary target/release/wasmftpd]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_reply(sock, buffer):
    """One complete reply (its last line) and the rest of the buffer."""
    while True:
        lines = buffer.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
                return line, b"\r\n".join(lines[i + 1:])
        data = sock.recv(4096)
        if not data:
            raise RuntimeError(f"connection closed: {buffer!r}")
        buffer += data


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""
        greeting, self.buffer = read_reply(self.sock, self.buffer)
        assert greeting.startswith(b"220"), greeting

    def attempt(self, user, password):
        """Seconds from USER to the reply to PASS, and that reply."""
        started = time.perf_counter()
        self.sock.sendall(f"USER {user}\r\n".encode())
        reply, self.buffer = read_reply(self.sock, self.buffer)
        assert reply.startswith(b"331"), reply
        self.sock.sendall(f"PASS {password}\r\n".encode())
        reply, self.buffer = read_reply(self.sock, self.buffer)
        return time.perf_counter() - started, reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--binary", default=str(REPO / "target/release/wasmftpd"))
    parser.add_argument("--cache-dir", default=str(REPO / "target/bench-cache"),
                        help="compiled plugins, kept between runs")
    args = parser.parse_args()

    def hash_password(password):
        return subprocess.run(
            [args.binary, "hash-password"], input=password + "\n",
            capture_output=True, text=True, check=True,
        ).stdout.strip()

    work = Path(tempfile.mkdtemp(prefix="login-timing-"))
    (work / "root").mkdir()
    config = work / "wasmftpd.toml"
    config.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
login_failure_delay = "0s"
cache_dir = "{args.cache_dir}"
[server.ban]
enabled = false
max_user_failures = 0

[site.main.auth]
plugin = "builtin:auth-static"
[site.main.auth.config.users.alice]
password = "{hash_password('alice-secret')}"
[site.main.auth.config.users.bob]
password = "{hash_password('bob-secret')}"
disabled = true
[site.main.storage]
plugin = "builtin:storage-fs"
[site.main.storage.dirs]
"/" = "{work / 'root'}"
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

        cases = {
            "unknown user": ("nobody", "alice-secret"),
            "wrong password": ("alice", "not-it"),
            "disabled account": ("bob", "bob-secret"),
        }
        times = {name: [] for name in cases}
        replies = {name: set() for name in cases}
        # A connection per attempt (the server closes one after a few failed
        # logins); only USER..PASS is timed.
        for name, (user, password) in cases.items():  # warm up each path
            Client(port).attempt(user, password)
        for _ in range(args.attempts):
            for name, (user, password) in cases.items():
                client = Client(port)
                seconds, reply = client.attempt(user, password)
                client.sock.close()
                times[name].append(seconds)
                replies[name].add(reply)

        base = statistics.median(times["wrong password"])
        print(f"auth-static refusals, {args.attempts} attempts each (USER+PASS round trip),"
              f" argon2id at `wasmftpd hash-password` cost, {args.binary}")
        print(f"{'case':<18} {'median ms':>10} {'p90 ms':>8} {'vs wrong password':>18}")
        worst = 0.0
        for name in cases:
            median = statistics.median(times[name])
            p90 = statistics.quantiles(times[name], n=10)[-1]
            ratio = median / base
            worst = max(worst, abs(ratio - 1))
            print(f"{name:<18} {median * 1000:>10.2f} {p90 * 1000:>8.2f} {ratio:>17.3f}x")
        same = len(set().union(*replies.values())) == 1
        print(f"replies identical: {same} ({sorted(set().union(*replies.values()))})")
        print(f"largest difference: {worst * 100:.1f} % (goal <= 10 %): "
              f"{'met' if worst <= 0.10 and same else 'MISSED'}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
