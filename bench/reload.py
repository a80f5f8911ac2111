#!/usr/bin/env python3
"""Hot-reload benchmark: time from a site file change to the first successful
login on the new version, and the cost of a reload with many sites of which
one changed. Prints figures; asserts nothing about time.

    python3 bench/reload.py [--sites 100] [--runs 5] [--binary target/release/wasmftpd]
"""

import argparse
import ftplib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sha512_crypt(password):
    return subprocess.run(
        ["openssl", "passwd", "-6", password], capture_output=True, text=True, check=True
    ).stdout.strip()


def site_text(root, users):
    lines = [f'host_names = ["{root.name}.test"]', "[auth]", 'plugin = "builtin:auth-static"']
    for user, hashed in users.items():
        lines += [f"[auth.config.users.{user}]", f'password = "{hashed}"']
    lines += ["[storage]", 'plugin = "builtin:storage-fs"', "[storage.dirs]", f'"/" = "{root}"']
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "wasmftpd"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wasmftpd-reload-"))
    conf = work / "conf"
    conf.mkdir()
    hashed = sha512_crypt("pw")
    (conf / "server.toml").write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\npassive_ports = "46000-46999"\nlogin_failure_delay = "0s"\n'
        'default_site = "site000"\n'
    )
    roots = []
    for i in range(args.sites):
        root = work / f"site{i:03d}"
        root.mkdir()
        roots.append(root)
        (conf / f"site{i:03d}.toml").write_text(site_text(root, {"user": hashed}))

    env = dict(os.environ, XDG_CACHE_HOME=str(REPO / "target" / "bench-cache"))
    proc = subprocess.Popen(
        [args.binary, "serve", "--config", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines = []
    port_box = []
    started = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = re.search(r"listening on \S+:(\d+)$", line.rstrip())
            if m:
                port_box.append(int(m.group(1)))
                started.set()

    threading.Thread(target=pump, daemon=True).start()
    t_start = time.monotonic()
    if not started.wait(300):
        print("\n".join(lines))
        sys.exit("server did not start")
    print(f"startup with {args.sites} sites: {time.monotonic() - t_start:.2f} s (cache warm if run before)")
    port = port_box[0]

    def login(site, user):
        client = ftplib.FTP(timeout=10)
        client.connect("127.0.0.1", port)
        client.sendcmd(f"HOST {site}.test")
        client.login(user, "pw")
        client.quit()

    latencies = []
    try:
        for run in range(args.runs):
            user = f"new{run}"
            target = roots[run % len(roots)]
            users = {"user": hashed, user: hashed}
            t0 = time.monotonic()
            (conf / f"{target.name}.toml").write_text(site_text(target, users))
            while True:
                try:
                    login(target.name, user)
                    break
                except ftplib.error_perm:
                    if time.monotonic() - t0 > 30:
                        sys.exit("the new user never got in")
                    time.sleep(0.005)
            latencies.append(time.monotonic() - t0)
        time.sleep(0.5)
        # Reload cost with nothing changed and with one site changed (from the log).
        before = len(lines)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("reload (SIGHUP)" in l for l in lines[before:]):
            time.sleep(0.01)
        unchanged = [l for l in lines[before:] if "reload (SIGHUP)" in l]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    cost = [int(m.group(1)) for l in lines if "reload (files changed)" in l and (m := re.search(r"in (\d+) ms", l))]
    print(f"site change -> first login on the new version: median {statistics.median(latencies) * 1000:.0f} ms "
          f"(min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}; includes the 150 ms debounce)")
    if cost:
        print(f"reload with {args.sites} sites, one changed: median {statistics.median(cost)} ms (server log)")
    if unchanged:
        print(f"reload with {args.sites} sites, none changed: {unchanged[-1].split('reload (SIGHUP): ')[-1]}")


if __name__ == "__main__":
    main()
