"""Fault injection, end to end with the real binary (issue 14): clients that
vanish mid-transfer leak nothing; a storage plugin stuck in the middle of a
transfer fails that transfer only; a full disk answers 552 and leaves no
partial upload behind."""

import ftplib
import io
import os
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, SERVER_DEFAULTS, site_toml, start_server, toml_str

ADMIN = '[server.admin]\nlisten = "127.0.0.1:0"\n'
VANISHING_SESSIONS = 1000
BIG_FILE = 8 << 20  # larger than the socket buffers, so RETR is cut mid-way


def cheap_hash(password):
    """A SHA-256 crypt hash (5,000 rounds): a thousand logins in seconds, where
    argon2id would take minutes; auth-static verifies both."""
    return subprocess.run(
        ["openssl", "passwd", "-5", "-salt", "faultsalt", password],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()


def fast_login_site(name, root, storage=None, extra=""):
    """Site `name` with user demo/demo (all permissions, cheap hash)."""
    out = [
        f"[site.{name}]", extra,
        f"[site.{name}.auth]", 'plugin = "builtin:auth-static"',
        f"[site.{name}.auth.config.users.demo]",
        f"password = {toml_str(cheap_hash('demo'))}",
        'permissions = "all"',
    ]
    out += storage or [
        f"[site.{name}.storage]", 'plugin = "builtin:storage-fs"',
        f"[site.{name}.storage.dirs]", f'"/" = {toml_str(str(root))}',
    ]
    return "\n".join(out) + "\n"


def admin_url(server):
    line = server.wait_for_log(r"admin HTTP on http://")
    return re.search(r"(http://[^\s]+) ", line).group(1)


def metrics(server):
    """{series: value} of every sample on /metrics."""
    with urllib.request.urlopen(admin_url(server) + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def gauge_sum(sample, prefix):
    return sum(v for k, v in sample.items() if k == prefix or k.startswith(prefix + "{"))


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def resources(server):
    """What a leak would grow: descriptors, tasks, plugin instances, connections."""
    sample = metrics(server)
    return {
        "fds": open_fds(server.proc.pid),
        "tasks": gauge_sum(sample, "wasmftpd_runtime_tasks_alive"),
        "instances": gauge_sum(sample, "wasmftpd_plugin_instances_live"),
        "connections": gauge_sum(sample, "wasmftpd_connections_open"),
        "sessions": gauge_sum(sample, "wasmftpd_sessions_open"),
    }


def settle(server, done, timeout=30):
    """Samples until `done(sample)` (sessions end asynchronously) or the
    timeout; returns the last sample."""
    deadline = time.monotonic() + timeout
    while True:
        now = resources(server)
        if done(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def idle(sample):
    return sample["connections"] == 0 and sample["sessions"] == 0


def reset(sock):
    """Closes with RST, as a client that crashed or lost its network."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def vanish_mid_transfer(server, n):
    """One session that starts a transfer and resets both connections in the
    middle of it: even n uploads, odd n downloads."""
    client = server.ftp(timeout=20)
    client.voidcmd("TYPE I")
    if n % 2 == 0:
        data = client.transfercmd(f"STOR up{n % 50}.bin")
        data.sendall(b"u" * (256 << 10))
    else:
        data = client.transfercmd("RETR big.bin")
        got = 0
        while got < (64 << 10):
            chunk = data.recv(65536)
            assert chunk, "download ended early"
            got += len(chunk)
    # Alternate which connection goes first: both orders must clean up.
    first, second = (data, client.sock) if n % 4 < 2 else (client.sock, data)
    reset(first)
    reset(second)
    client.sock = None


def test_clients_vanishing_mid_stor_and_retr_leak_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(BIG_FILE))
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS + 'max_connections_per_ip = 200\n' + ADMIN + fast_login_site("main", root)
    )
    server = start_server(config)
    try:
        # Warm up (plugin compilation, pools, lazily created metric series),
        # then take the baseline with nobody connected.
        for n in range(20):
            vanish_mid_transfer(server, n)
        baseline = settle(server, idle)
        assert idle(baseline), baseline
        # The counts do see a live session (so the comparison below can fail).
        probe = server.ftp()
        probe.nlst()
        live = resources(server)
        assert live["fds"] > baseline["fds"], (baseline, live)
        assert live["tasks"] > baseline["tasks"], (baseline, live)
        assert live["instances"] > baseline["instances"], (baseline, live)
        probe.quit()
        assert idle(settle(server, idle))

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: vanish_mid_transfer(server, n), range(VANISHING_SESSIONS)))
        elapsed = time.monotonic() - started

        after = settle(server, lambda now: now == baseline)
        assert after == baseline, f"before {baseline}, after {VANISHING_SESSIONS} sessions {after}"
        # Every upload was cut: atomic uploads left nothing, not even their
        # temporary files (the plugin saw each writer dropped).
        assert sorted(os.listdir(root)) == ["big.bin"]
        print(f"{VANISHING_SESSIONS} vanishing sessions in {elapsed:.1f}s; counts {after}")

        # The transfers were really cut (not finished before the reset) ...
        sample = metrics(server)
        failed = sum(
            v for k, v in sample.items()
            if k.startswith("wasmftpd_transfers_total{") and 'result="ok"' not in k
        )
        assert failed >= VANISHING_SESSIONS * 0.9, sample
        # ... and the server still serves.
        client = server.ftp()
        buf = io.BytesIO()
        client.retrbinary("RETR big.bin", buf.write)
        assert len(buf.getvalue()) == BIG_FILE
        client.quit()
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log()


def limits_plugin():
    """The misbehaving `test-limits` plugin that `cargo build` made (host/build.rs)."""
    found = sorted(
        (REPO / "target" / "debug" / "build").glob(
            "wasmftpd-*/out/plugins-target/wasm32-wasip2/release/test_limits.wasm"
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        pytest.fail("test_limits.wasm is missing: run `cargo build` first")
    return found[-1]


def limits_site(name, call_timeout="1s"):
    """Site `name` whose storage is test-limits (every path reads as zeroes;
    `/loop-read` spins in every read; uploads are discarded)."""
    return fast_login_site(
        name,
        None,
        storage=[
            f"[site.{name}.storage]",
            f"plugin = {toml_str(str(limits_plugin()))}",
            f'call_timeout = "{call_timeout}"',
        ],
    )


def test_storage_plugin_stuck_mid_retr_fails_that_transfer_only(tmp_path):
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + ADMIN + limits_site("main"))
    server = start_server(config)
    try:
        stuck = server.ftp()
        stuck.voidcmd("TYPE I")
        outcome = {}

        def retr_stuck():
            try:
                stuck.retrbinary("RETR /loop-read", lambda _: None)
                outcome["reply"] = "finished"
            except ftplib.Error as e:
                outcome["reply"] = str(e)

        thread = threading.Thread(target=retr_stuck)
        started = time.monotonic()
        thread.start()
        # While the plugin spins for that session, another session on the same
        # site logs in, lists and uploads.
        other = server.ftp()
        # test-limits (0.2) lists its session's facts, the call count first.
        assert other.nlst()[0].startswith("calls=")
        other.storbinary("STOR /x.bin", io.BytesIO(b"x" * 100_000))
        other.quit()
        beside = time.monotonic() - started
        thread.join(30)
        assert not thread.is_alive(), "RETR never ended"
        print("stuck RETR:", outcome)
        assert outcome["reply"][:3] in ("426", "451"), outcome
        # Within the call deadline, not the data timeout.
        assert time.monotonic() - started < 8, outcome
        assert beside < 5, f"the other session waited {beside:.1f}s"
        # The session that hit the fault keeps working, with a fresh instance.
        assert stuck.voidcmd("NOOP").startswith("200")
        assert stuck.nlst()[0].startswith("calls=")
        stuck.storbinary("STOR /y.bin", io.BytesIO(b"y" * 1000))
        stuck.quit()
        sample = metrics(server)
        assert gauge_sum(sample, "wasmftpd_plugin_faults_total") >= 1, sample
        assert any('kind="timeout"' in k and v >= 1 for k, v in sample.items()
                   if k.startswith("wasmftpd_plugin_faults_total")), sample
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs the right to mount, as root here)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_disk_full_during_stor_is_552_and_leaves_no_partial_file(tmp_path, small_disk):
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + fast_login_site("main", small_disk))
    server = start_server(config)
    try:
        client = server.ftp()
        with pytest.raises(ftplib.error_perm, match="^552"):
            try:
                client.storbinary("STOR big.bin", io.BytesIO(b"b" * (4 << 20)))
            except (ConnectionResetError, BrokenPipeError):
                # The server stopped reading when the disk filled and closed
                # the data connection under the client's unsent bytes; the
                # 552 is then still waiting on the control connection.
                client.getresp()
        # The partial upload is gone by the time the client hears 552 ...
        assert os.listdir(small_disk) == []
        # ... and the session goes on: a file that fits is stored whole.
        client.storbinary("STOR small.bin", io.BytesIO(b"s" * 1000))
        assert (small_disk / "small.bin").read_bytes() == b"s" * 1000
        client.quit()
    finally:
        server.stop()


@pytest.mark.parametrize("direction", ["read", "write"])
@pytest.mark.parametrize("fault", ["trap", "loop", "alloc"])
def test_storage_plugin_failing_mid_transfer_fails_that_transfer_only(tmp_path, fault, direction):
    """test-limits moves a few chunks of `/FAULT-mid-read` (RETR) or
    `/FAULT-mid-write` (STOR), then traps, spins or allocates without bound."""
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS + ADMIN
        + limits_site("main").replace('call_timeout = "1s"', 'call_timeout = "1s"\nmemory_limit = "32MiB"')
    )
    server = start_server(config)
    try:
        client = server.ftp()
        client.voidcmd("TYPE I")
        path = f"/{fault}-mid-{direction}"
        started = time.monotonic()
        reply = failed_transfer(client, direction, path)
        assert reply[:3] in ("426", "451"), reply
        assert time.monotonic() - started < 10
        # The session goes on, with a fresh instance ...
        assert client.voidcmd("NOOP").startswith("200")
        assert client.nlst()[0].startswith("calls=")
        client.storbinary("STOR /fine.bin", io.BytesIO(b"f" * 300_000))
        # ... and so does another session on the site.
        other = server.ftp()
        assert other.nlst()[0].startswith("calls=")
        other.quit()
        client.quit()
        kind = {"trap": "trap", "loop": "timeout", "alloc": "memory"}[fault]
        sample = metrics(server)
        assert any(f'kind="{kind}"' in k and v >= 1 for k, v in sample.items()
                   if k.startswith("wasmftpd_plugin_faults_total")), sample
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log()


def failed_transfer(client, direction, path):
    """The final reply of a transfer that the server is expected to fail."""
    try:
        if direction == "read":
            client.retrbinary(f"RETR {path}", lambda _: None)
        else:
            client.storbinary(f"STOR {path}", io.BytesIO(b"w" * (16 << 20)))
    except ftplib.Error as e:
        return str(e)
    except OSError:
        # The server closed the data connection while we were still sending;
        # its reply is waiting on the control connection.
        try:
            client.getresp()
        except ftplib.Error as e:
            return str(e)
    return "the transfer succeeded"


def storage_fs_site(root, atomic=None):
    storage_config = [] if atomic is None else [
        "[site.main.storage.config]", f"atomic_uploads = {atomic}",
    ]
    return fast_login_site("main", root, storage=[
        "[site.main.storage]", 'plugin = "builtin:storage-fs"',
        *storage_config,
        "[site.main.storage.dirs]", f'"/" = {toml_str(str(root))}',
    ])


def visible_while_uploading(server, root):
    """Names in `root` while an upload of `new.bin` is half-way, and after it."""
    client = server.ftp()
    client.voidcmd("TYPE I")
    data = client.transfercmd("STOR new.bin")
    data.sendall(b"n" * (1 << 20))
    deadline = time.monotonic() + 10
    # Wait until the server has written some of it, somewhere.
    while not any(p.stat().st_size for p in root.iterdir()):
        assert time.monotonic() < deadline, "no upload appeared"
        time.sleep(0.02)
    during = sorted(os.listdir(root))
    data.sendall(b"n" * (1 << 20))
    data.close()
    client.voidresp()
    after = sorted(os.listdir(root))
    client.quit()
    return during, after


def start_storage_fs_server(tmp_path, atomic=None):
    """A server with one storage-fs site on a fresh root: (server, root)."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + storage_fs_site(root, atomic))
    return start_server(config), root


def test_atomic_uploads_hide_the_file_until_complete(tmp_path):
    server, root = start_storage_fs_server(tmp_path)  # default: atomic
    try:
        during, after = visible_while_uploading(server, root)
        assert len(during) == 1 and during[0].startswith(".wasmftpd-upload."), during
        assert after == ["new.bin"]
        assert (root / "new.bin").stat().st_size == 2 << 20
    finally:
        server.stop()


def test_atomic_upload_cut_by_a_reset_leaves_nothing(tmp_path):
    """An atomic upload big enough to go through splice (past 256 KiB), cut by
    a reset half-way: 426, nothing under the final name, no temporary file,
    and the next upload of the session completes."""
    server, root = start_storage_fs_server(tmp_path)  # default: atomic
    try:
        client = server.ftp()
        client.voidcmd("TYPE I")
        conn = client.transfercmd("STOR big.bin")
        conn.sendall(b"b" * (4 << 20))
        deadline = time.monotonic() + 10
        while sum(p.stat().st_size for p in root.iterdir()) < (2 << 20):
            assert time.monotonic() < deadline, "the server stored too little too slowly"
            time.sleep(0.01)
        reset(conn)
        reply = client.getmultiline()
        assert reply.startswith("426"), reply
        deadline = time.monotonic() + 5
        while os.listdir(root):
            assert time.monotonic() < deadline, f"left behind: {os.listdir(root)}"
            time.sleep(0.02)
        client.storbinary("STOR big.bin", io.BytesIO(b"c" * (3 << 20)))
        assert (root / "big.bin").read_bytes() == b"c" * (3 << 20)
        assert os.listdir(root) == ["big.bin"]
        client.quit()
    finally:
        server.stop()


def test_atomic_uploads_off_writes_in_place(tmp_path):
    server, root = start_storage_fs_server(tmp_path, atomic="false")
    try:
        during, after = visible_while_uploading(server, root)
        assert during == ["new.bin"] and after == ["new.bin"]
    finally:
        server.stop()


def test_atomic_uploads_bad_value_is_refused_clearly(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + storage_fs_site(root, atomic='"maybe"'))
    server = start_server(config)
    try:
        client = server.ftp()
        with pytest.raises(ftplib.Error, match="^4"):
            client.storbinary("STOR x.bin", io.BytesIO(b"x"))
        server.wait_for_log("atomic_uploads must be `true` or `false`")
        assert os.listdir(root) == []
    finally:
        server.stop()


UPLOADS = 20


def test_sigkill_during_concurrent_uploads_leaves_no_truncated_file(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    old = {f"up{i}.bin": f"old {i}".encode() * 1000 for i in range(0, UPLOADS, 2)}
    for name, content in old.items():
        (root / name).write_bytes(content)
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + f"max_connections_per_ip = {UPLOADS + 10}\n"
                      + storage_fs_site(root))
    server = start_server(config)
    uploads = []
    try:
        for i in range(UPLOADS):
            client = server.ftp()
            client.voidcmd("TYPE I")
            data = client.transfercmd(f"STOR up{i}.bin")
            data.sendall(b"n" * (512 << 10))
            uploads.append((client, data))
        # Readiness from the server's own writes: every upload has bytes on disk.
        deadline = time.monotonic() + 20
        while True:
            temps = [p for p in root.iterdir() if p.name.startswith(".wasmftpd-upload.")]
            if len(temps) == UPLOADS and all(p.stat().st_size > 0 for p in temps):
                break
            assert time.monotonic() < deadline, sorted(os.listdir(root))
            time.sleep(0.02)
        server.proc.kill()
        server.proc.wait()
    finally:
        for client, data in uploads:
            data.close()
            client.sock.close()
        server.stop()

    # After a restart: every final name holds its old content or does not
    # exist; only dot-named temporary files hold the partial data.
    server = start_server(config)
    try:
        finals = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        assert finals == sorted(old), finals
        for name, content in old.items():
            assert (root / name).read_bytes() == content
        client = server.ftp()
        client.storbinary("STOR up1.bin", io.BytesIO(b"complete"))
        assert (root / "up1.bin").read_bytes() == b"complete"
        client.quit()
    finally:
        server.stop()
