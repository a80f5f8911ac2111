#!/usr/bin/env python3
"""FTP in front of S3, side by side, on one SeaweedFS store (bench/s3.sh runs
this after installing what it needs):

    wasmftpd + builtin:storage-s3        (this repository, release build)
    rclone serve ftp                     (what users run today)
    rclone copy/copyto straight to S3    (no FTP at all: the limit)

Figures, medians over RUNS interleaved rounds:
    RETR 1 GiB, STOR 1 GiB                curl, MB/s (10^6 bytes)
    1,000 x 4 KiB STOR+RETR+DELE          ftplib, one session, files/s
    LIST of a 10,000-object prefix        ftplib LIST, seconds
    wasmftpd peak RSS during STOR         sampled every 10 ms, MiB
and each server's CPU seconds per operation (the store's CPU is the same for
all and is not counted), robust to a busy machine where throughput is not.
The plugin's memory during STOR is bounded by the site's memory_limit, set to
MEMORY_LIMIT (default 32MiB): a STOR that passes proves it stayed below.

Environment: WASMFTPD (binary), RUNS (3), SIZE (1073741824), SMALL (1000),
LIST_OBJECTS (10000), WEED_DIR (/dev/shm/wasmftpd-s3-bench), MEMORY_LIMIT,
RESULTS (also write the markdown table there).
"""

import ftplib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS, free_ports  # noqa: E402

WASMFTPD = Path(os.environ.get("WASMFTPD", REPO / "target" / "release" / "wasmftpd"))
RUNS = int(os.environ.get("RUNS", "3"))
SIZE = int(os.environ.get("SIZE", str(1 << 30)))
SMALL = int(os.environ.get("SMALL", "1000"))
LIST_OBJECTS = int(os.environ.get("LIST_OBJECTS", "10000"))
WEED_DIR = Path(os.environ.get("WEED_DIR", "/dev/shm/wasmftpd-s3-bench"))
MEMORY_LIMIT = os.environ.get("MEMORY_LIMIT", "32MiB")
BUCKET = "bench"
USER, PASSWORD = "bench", "bench-password"
TICK = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"s3 bench: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process (and its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


class RssSampler:
    """The highest VmRSS of a process while running, sampled every 10 ms."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{self.pid}/status").read_text())
            if m:
                self.peak = max(self.peak, int(m.group(1)) * 1024)
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def wait_for_ftp(port, proc, timeout=120):
    """Until the server greets (its own readiness: a 220 on connect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", port, timeout=2)
            ftp.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no FTP greeting on port {port}")


class Server:
    def __init__(self, label, proc, port):
        self.label = label
        self.proc = proc
        self.port = port

    def url(self, path):
        return f"ftp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{path}"

    def ftp(self):
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=120)
        ftp.login(USER, PASSWORD)
        return ftp

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_wasmftpd(workdir, endpoint):
    hashed = subprocess.run(
        [str(WASMFTPD), "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    config = workdir / "wasmftpd.toml"
    config.write_text(
        f"""
[server]
listen = ["127.0.0.1:0"]
passive_ports = "45000-45999"
login_failure_delay = "0s"

[site.bench]
[site.bench.auth]
plugin = "builtin:auth-static"
[site.bench.auth.config.users.{USER}]
password = "{hashed}"
permissions = "all"

[site.bench.storage]
plugin = "builtin:storage-s3"
allowed_hosts = ["{endpoint}"]
memory_limit = "{MEMORY_LIMIT}"
call_timeout = "60s"
[site.bench.storage.config]
endpoint = "{endpoint}"
bucket = "{BUCKET}"
prefix = "wasmftpd"
access_key_id = "{ACCESS_KEY}"
[site.bench.storage.config_env]
secret_access_key = "BENCH_S3_SECRET"
"""
    )
    env = dict(os.environ, BENCH_S3_SECRET=SECRET_KEY, RUST_LOG="warn,wasmftpd::server=info")
    env["XDG_CACHE_HOME"] = str(workdir / "cache")
    proc = subprocess.Popen(
        [str(WASMFTPD), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        m = re.search(r"listening on [^\s:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    else:
        raise RuntimeError("wasmftpd did not start")
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return Server("wasmftpd+storage-s3", proc, port)


def rclone_env(endpoint):
    return dict(
        os.environ,
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="SeaweedFS",
        RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
        RCLONE_CONFIG_BENCH_REGION="us-east-1",
    )


def start_rclone(endpoint):
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            "rclone",
            "serve",
            "ftp",
            f"bench:{BUCKET}/rclone",
            "--addr",
            f"127.0.0.1:{port}",
            "--user",
            USER,
            "--pass",
            PASSWORD,
            "--passive-port",
            "46000-46999",
            # Read the store on every listing, as wasmftpd does (the default
            # 5-minute directory cache would hide other hosts' changes).
            "--dir-cache-time",
            "0s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=rclone_env(endpoint),
    )
    wait_for_ftp(port, proc)
    return Server("rclone serve ftp", proc, port)


def timed(server, fn):
    """Runs fn(); returns (seconds, the server's CPU seconds)."""
    cpu = server.cpu() if server else 0.0
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return wall, (server.cpu() - cpu) if server else 0.0


def curl(*args):
    subprocess.run(["curl", "-sS", "--fail", *args], check=True, timeout=3600)


def stor_big(server, source):
    curl("-T", str(source), server.url("big.bin"))


def retr_big(server, out):
    curl("-o", str(out), server.url("big.bin"))


def small_files(server):
    ftp = server.ftp()
    try:
        ftp.mkd("small")
    except ftplib.error_perm:
        pass  # there from an earlier round
    ftp.voidcmd("TYPE I")
    for i in range(SMALL):
        data = (b"%08d" % i) * 512
        ftp.storbinary(f"STOR small/f{i}", io.BytesIO(data))
        got = io.BytesIO()
        ftp.retrbinary(f"RETR small/f{i}", got.write)
        if got.getvalue() != data:
            raise RuntimeError(f"{server.label}: small/f{i} came back different")
        ftp.delete(f"small/f{i}")
    ftp.quit()


def list_dir(server):
    ftp = server.ftp()
    lines = []
    ftp.retrlines("LIST list10k", lines.append)
    ftp.quit()
    if len(lines) != LIST_OBJECTS:
        raise RuntimeError(f"{server.label}: LIST gave {len(lines)} lines, not {LIST_OBJECTS}")


def fill_list_prefixes(client):
    """LIST_OBJECTS small objects under each server's list10k/, put straight into S3."""
    keys = [f"{side}/list10k/entry-{i:05d}.txt" for side in ("wasmftpd", "rclone") for i in range(LIST_OBJECTS)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put(BUCKET, key, b"x"), keys))


def main():
    for tool in ("curl", "rclone"):
        if not shutil.which(tool):
            sys.exit(f"s3 bench: `{tool}` is missing (bench/s3.sh installs it)")
    if not WASMFTPD.exists():
        sys.exit(f"s3 bench: {WASMFTPD} is missing (cargo build --release)")
    shutil.rmtree(WEED_DIR, ignore_errors=True)
    work = WEED_DIR / "work"
    work.mkdir(parents=True)
    source = WEED_DIR / "source.bin"
    with open(source, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(SIZE // len(block)):
            f.write(block)
        f.write(block[: SIZE % len(block)])
    out = WEED_DIR / "out.bin"

    log(f"starting SeaweedFS in {WEED_DIR}")
    weed = SeaweedFS(WEED_DIR / "weed")
    servers = []
    try:
        weed.client.create_bucket(BUCKET)
        endpoint = weed.client.endpoint
        log(f"filling two prefixes with {LIST_OBJECTS} objects each")
        fill_list_prefixes(weed.client)
        servers = [start_wasmftpd(work, endpoint), start_rclone(endpoint)]
        wasm = servers[0]
        env = rclone_env(endpoint)
        results = {}  # (figure, label) -> list of (value, cpu per op)
        peak_rss = []

        def record(figure, label, value, cpu):
            results.setdefault((figure, label), []).append((value, cpu))

        for round_no in range(RUNS):
            order = servers if round_no % 2 == 0 else list(reversed(servers))
            log(f"round {round_no + 1}/{RUNS}")
            for server in order:
                if server is wasm:
                    with RssSampler(server.proc.pid) as rss:
                        wall, cpu = timed(server, lambda: stor_big(server, source))
                    peak_rss.append(rss.peak)
                else:
                    wall, cpu = timed(server, lambda: stor_big(server, source))
                record("STOR", server.label, SIZE / wall / 1e6, cpu / (SIZE / 2**30))
                wall, cpu = timed(server, lambda: retr_big(server, out))
                if out.stat().st_size != SIZE:
                    raise RuntimeError(f"{server.label}: RETR gave {out.stat().st_size} bytes")
                record("RETR", server.label, SIZE / wall / 1e6, cpu / (SIZE / 2**30))
                out.unlink()
                wall, cpu = timed(server, lambda: small_files(server))
                record("small", server.label, SMALL / wall, cpu / SMALL)
                wall, cpu = timed(server, lambda: list_dir(server))
                record("LIST", server.label, wall, cpu)

            def copy(*args):
                # --ignore-times: without it the rounds after the first find the
                # object unchanged and skip the upload.
                subprocess.run(["rclone", "--ignore-times", *args], check=True, env=env, timeout=3600)

            wall, _ = timed(None, lambda: copy("copyto", str(source), f"bench:{BUCKET}/direct/big.bin"))
            record("STOR", "rclone copy", SIZE / wall / 1e6, None)
            wall, _ = timed(None, lambda: copy("copyto", f"bench:{BUCKET}/direct/big.bin", str(out)))
            record("RETR", "rclone copy", SIZE / wall / 1e6, None)
            out.unlink()

        report(results, peak_rss)
    finally:
        for server in servers:
            server.stop()
        weed.stop()
        shutil.rmtree(WEED_DIR, ignore_errors=True)


def report(results, peak_rss):
    def median(figure, label, index=0):
        values = [v[index] for v in results.get((figure, label), []) if v[index] is not None]
        return statistics.median(values) if values else None

    w, r, c = "wasmftpd+storage-s3", "rclone serve ftp", "rclone copy"
    size = f"{SIZE / 2**30:g} GiB" if SIZE >= 2**30 else f"{SIZE / 2**20:g} MiB"
    rows = [
        (f"RETR {size}", "MB/s", "RETR", True),
        (f"STOR {size}", "MB/s", "STOR", True),
        (f"{SMALL} x 4 KiB STOR+RETR+DELE", "files/s", "small", True),
        (f"LIST {LIST_OBJECTS} objects", "s", "LIST", False),
    ]
    lines = [
        f"SIZE={SIZE} RUNS={RUNS} memory_limit={MEMORY_LIMIT}; medians",
        "",
        f"| figure | {w} | {r} | {c} | vs serve ftp | vs copy |",
        "|---|---|---|---|---|---|",
    ]
    for title, unit, figure, higher_better in rows:
        wv, rv, cv = median(figure, w), median(figure, r), median(figure, c)

        def ratio(ours, theirs):
            if ours is None or theirs is None:
                return "-"
            return f"{(ours / theirs if higher_better else theirs / ours):.2f}x"

        fmt = (lambda v: "-" if v is None else f"{v:,.0f}") if higher_better else (
            lambda v: "-" if v is None else f"{v:.3f}"
        )
        lines.append(
            f"| {title} ({unit}) | {fmt(wv)} | {fmt(rv)} | {fmt(cv)} | {ratio(wv, rv)} | {ratio(wv, cv)} |"
        )
    lines.append(f"| wasmftpd peak RSS during STOR (MiB) | {max(peak_rss) / 2**20:.0f} | | | | |")
    lines += ["", "Server CPU seconds per operation (per GiB for RETR/STOR, per file, per LIST):", ""]
    lines.append(f"| figure | {w} | {r} | {r} / ours |")
    lines.append("|---|---|---|---|")
    for title, _, figure, _ in rows:
        wc, rc = median(figure, w, 1), median(figure, r, 1)
        ratio = f"{rc / wc:.2f}x" if wc and rc else "-"
        lines.append(f"| {title} | {wc:.4f} | {rc:.4f} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if os.environ.get("RESULTS"):
        Path(os.environ["RESULTS"]).write_text(text + "\n")


if __name__ == "__main__":
    main()
