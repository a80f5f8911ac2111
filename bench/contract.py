#!/usr/bin/env python3
"""Contract 0.2 benchmarks (issue 11). Prints figures; asserts nothing about time.

1. Logins/s through builtin:auth-http (8 clients: connect + USER/PASS + QUIT)
   against a local HTTP user directory, next to the rate at which the same
   service answers a plain HTTP client alone (8 threads, one connection per
   request, as the plugin makes them), and the ratio (issue target >= 0.5).
2. LIST of a large directory (default 1,000,000 entries) and of 10,000: time,
   and the server's RSS before and at its peak during the listing.

    python3 bench/contract.py [--binary target/release/wasmftpd] [--seconds 10]
                              [--entries 1000000] [--skip-logins] [--skip-list]

The HTTP service runs in its own process (so the clients do not share its
interpreter); both measurements use the same Python client machinery, so the
ratio compares like with like. Run on a quiet machine with a release build.
"""

import argparse
import ftplib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIENTS = 8


def serve(port_file):
    """The user directory: every user's password is "pw"."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            ok = body.get("password") == "pw"
            raw = json.dumps({"home": "/", "permissions": "all"}).encode() if ok else b""
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def start_service(work):
    port_file = work / "service.port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            sys.exit("the HTTP service did not start")
        time.sleep(0.01)
    return proc, int(port_file.read_text())


def start_server(binary, config):
    env = dict(os.environ, XDG_CACHE_HOME=str(REPO / "target" / "bench-cache"), RUST_LOG="warn,wasmftpd=info")
    proc = subprocess.Popen([binary, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ready = threading.Event()
    port = []

    def pump():
        for line in proc.stdout:
            m = re.search(r"listening on \S+:(\d+)$", line.rstrip())
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(300):
        proc.kill()
        sys.exit("server did not start")
    return proc, port[0]


def run_clients(seconds, once):
    """Calls `once()` from CLIENTS threads for `seconds`; operations per second."""
    count = [0] * CLIENTS
    errors = []
    stop = time.monotonic() + seconds

    def work(i):
        while time.monotonic() < stop:
            try:
                once()
                count[i] += 1
            except Exception as e:  # noqa: BLE001 - counted, shown once
                errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  ({len(errors)} errors, first: {errors[0]})")
    return sum(count) / (time.monotonic() - started)


def logins(args, work):
    service, port = start_service(work)
    origin = f"http://127.0.0.1:{port}"
    root = work / "root"
    root.mkdir()
    config = work / "logins.toml"
    config.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
passive_ports = "47000-47999"
login_failure_delay = "0s"
max_connections_per_ip = 1000

[site.main.auth]
plugin = "builtin:auth-http"
allowed_hosts = ["{origin}"]
config = {{ url = "{origin}/auth", timeout = "3s", cache = "0s" }}
[site.main.storage]
plugin = "builtin:storage-fs"
[site.main.storage.dirs]
"/" = "{root}"
""")
    server, ftp_port = start_server(args.binary, config)
    body = json.dumps({"user": "u", "password": "pw", "client_address": "127.0.0.1",
                       "tls": False, "site": "main"})

    def native():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/auth", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")

    def login():
        client = ftplib.FTP(timeout=10)
        client.connect("127.0.0.1", ftp_port)
        client.login("u", "pw")
        client.quit()

    try:
        login()  # warm: plugin compiled and cached
        native_rate = run_clients(args.seconds, native)
        ftp_rate = run_clients(args.seconds, login)
    finally:
        server.terminate()
        server.wait(10)
        service.terminate()
        service.wait(10)
    print(f"HTTP service, plain client ({CLIENTS} threads, new connection each): {native_rate:.0f} req/s")
    print(f"FTP logins through builtin:auth-http ({CLIENTS} clients):           {ftp_rate:.0f} logins/s")
    print(f"ratio: {ftp_rate / native_rate:.2f} (target >= 0.5)")


def rss_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def listing(args, work):
    root = work / "root-list"
    sizes = sorted({10_000, args.entries})
    for n in sizes:
        d = root / f"d{n}"
        d.mkdir(parents=True)
        made = time.monotonic()
        for i in range(n):
            os.close(os.open(d / f"entry-{i:07d}", os.O_CREAT | os.O_WRONLY, 0o644))
        print(f"(made {n} files in {time.monotonic() - made:.0f} s)")
    hashed = subprocess.run([args.binary, "hash-password"], input="pw\n", capture_output=True,
                            text=True, check=True).stdout.strip()
    config = work / "list.toml"
    config.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
passive_ports = "47000-47999"

[site.main.auth]
plugin = "builtin:auth-static"
[site.main.auth.config.users.u]
password = "{hashed}"
[site.main.storage]
plugin = "builtin:storage-fs"
[site.main.storage.dirs]
"/" = "{root}"
""")
    server, port = start_server(args.binary, config)
    try:
        client = ftplib.FTP(timeout=600)
        client.connect("127.0.0.1", port)
        client.login("u", "pw")
        client.nlst()  # warm
        for n in sizes:
            for command in ("LIST", "MLSD"):
                before = rss_kib(server.pid, "VmRSS")
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")
                lines = [0]

                def count(_line):
                    lines[0] += 1

                started = time.monotonic()
                client.retrlines(f"{command} d{n}", count)
                took = time.monotonic() - started
                peak = rss_kib(server.pid, "VmHWM")
                print(f"{command} {n:>9,} entries: {took * 1000:9.1f} ms, {lines[0]:,} lines; "
                      f"server RSS {before / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB")
        client.quit()
    finally:
        server.terminate()
        server.wait(10)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "wasmftpd"))
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--skip-logins", action="store_true")
    ap.add_argument("--skip-list", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wasmftpd-contract-"))
    try:
        if not args.skip_logins:
            logins(args, work)
        if not args.skip_list:
            listing(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
