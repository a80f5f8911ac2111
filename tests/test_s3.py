"""builtin:storage-s3 end to end: the real binary in front of a real S3
server (SeaweedFS on loopback), driven by ftplib and curl, with the bucket
checked behind the server's back by an independent S3 client."""

import ftplib
import hashlib
import io
import os
import socket
import struct
import subprocess
import time

import pytest

from conftest import BINARY, CACHE, password_hash, toml_str
from seaweedfs import ACCESS_KEY, SECRET_KEY


def payload(size, seed=1):
    """Deterministic bytes, every value included."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        out += block + bytes(range(256))
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


def wait_until(condition, server, timeout=20):
    """Polls what the bucket shows until `condition` holds (the plugin acts
    on a released writer in the background)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s:\n{server.log()}")
        time.sleep(0.05)


def retr(client, path, rest=None):
    buf = io.BytesIO()
    client.retrbinary(f"RETR {path}", buf.write, rest=rest)
    return buf.getvalue()


def stor(client, path, data, cmd="STOR", rest=None):
    return client.storbinary(f"{cmd} {path}", io.BytesIO(data), blocksize=256 * 1024, rest=rest)


def s3_site(endpoint, bucket, users, storage_extra="", config_extra="", secret_in_file=True):
    """A [site.main] with auth-static users ({name: (password, perms)}) and
    storage-s3 on `bucket`."""
    out = ["[site.main]", "[site.main.auth]", 'plugin = "builtin:auth-static"']
    out.append("[site.main.auth.config]")
    out.append("anonymous = false")
    for user, (password, perms) in users.items():
        out.append(f"[site.main.auth.config.users.{user}]")
        out.append(f"password = {toml_str(password_hash(password))}")
        out.append(f"permissions = {toml_str(perms)}")
    out += [
        "[site.main.storage]",
        'plugin = "builtin:storage-s3"',
        f"allowed_hosts = [{toml_str(endpoint)}]",
        storage_extra,
        "[site.main.storage.config]",
        f"endpoint = {toml_str(endpoint)}",
        f"bucket = {toml_str(bucket)}",
        f"access_key_id = {toml_str(ACCESS_KEY)}",
    ]
    if secret_in_file:
        out.append(f"secret_access_key = {toml_str(SECRET_KEY)}")
    out.append(config_extra)
    return "\n".join(out) + "\n"


DEMO = {"demo": ("demo", "all"), "reader": ("reader", "read-only")}


@pytest.fixture
def s3_server(make_server, s3_area):
    """A server whose site `main` stores under `ftp/` (or `prefix`) in the
    test's area of the bucket; `server.s3` looks at that area directly."""

    def make(users=DEMO, prefix="ftp", config_extra=""):
        config = f"prefix = {toml_str(s3_area.prefix + prefix)}\n{config_extra}"
        server = make_server(
            sites=s3_site(s3_area.client.endpoint, s3_area.bucket, users, config_extra=config)
        )
        server.s3 = s3_area
        return server

    return make


def test_kit_battery_passes_against_seaweedfs(s3_area):
    client, bucket = s3_area.client, s3_area.bucket
    env = dict(os.environ, XDG_CACHE_HOME=str(CACHE))
    out = subprocess.run(
        [
            str(BINARY),
            "plugin",
            "test",
            "--storage",
            "builtin:storage-s3",
            "--allow-host",
            client.endpoint,
            "--config",
            f"endpoint={client.endpoint}",
            "--config",
            f"bucket={bucket}",
            "--config",
            f"access_key_id={ACCESS_KEY}",
            "--config",
            f"secret_access_key={SECRET_KEY}",
            "--config",
            f"prefix={s3_area.prefix}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failed" in out.stdout, out.stdout
    assert "FAIL" not in out.stdout
    # Everything the battery made was removed through the plugin.
    assert s3_area.keys() == []
    assert s3_area.uploads() == []


def test_files_and_directories_map_onto_keys(s3_server):
    server = s3_server()
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    assert ftp.sendcmd("MKD docs").startswith("257")
    data = payload(300_000)
    stor(ftp, "docs/report.bin", data)
    stor(ftp, "top.txt", b"hello\n")
    keys = sorted(server.s3.keys())
    assert keys == ["ftp/docs/", "ftp/docs/report.bin", "ftp/top.txt"]
    assert server.s3.get("ftp/docs/report.bin") == data

    assert retr(ftp, "docs/report.bin") == data
    assert retr(ftp, "docs/report.bin", rest=123_456) == data[123_456:]
    assert ftp.size("docs/report.bin") == len(data)
    assert ftp.sendcmd("MDTM docs/report.bin").startswith("213 ")
    names = dict(ftp.mlsd("docs", facts=["type", "size"]))
    assert names["report.bin"] == {"type": "file", "size": str(len(data))}
    assert sorted(ftp.nlst()) == ["docs", "top.txt"]
    listing = []
    ftp.retrlines("LIST", listing.append)
    assert any(line.startswith("d") and line.endswith(" docs") for line in listing), listing

    ftp.cwd("docs")
    assert ftp.pwd() == "/docs"
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.cwd("/missing")
    with pytest.raises(ftplib.error_perm, match="^550"):
        retr(ftp, "/missing.txt")
    with pytest.raises(ftplib.error_perm, match="^550"):
        stor(ftp, "/no/such/dir/f", b"x")
    ftp.cwd("/")

    # An empty directory exists (its marker), can be listed and removed.
    ftp.mkd("empty")
    assert ftp.nlst("empty") == []
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.rmd("docs")  # not empty
    ftp.rmd("empty")
    assert "ftp/empty/" not in server.s3.keys()

    ftp.delete("docs/report.bin")
    assert server.s3.get("ftp/docs/report.bin") is None
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.delete("docs/report.bin")
    # The directory outlives its last file.
    assert ftp.nlst("docs") == []
    ftp.quit()


def test_objects_written_by_other_tools_are_listed(s3_server):
    server = s3_server()
    server.s3.put("ftp/a/b/c.txt", b"deep")
    server.s3.put("ftp/x y.txt", b"spaced")
    ftp = server.ftp()
    # `a` and `a/b` exist only as prefixes (no markers).
    assert sorted(ftp.nlst()) == ["a", "x y.txt"]
    assert retr(ftp, "a/b/c.txt") == b"deep"
    assert retr(ftp, "x y.txt") == b"spaced"
    ftp.delete("a/b/c.txt")
    # Deleting the last file keeps the directory (a marker is written).
    assert ftp.nlst("a/b") == []
    ftp.quit()


def test_awkward_names_round_trip(s3_server):
    server = s3_server()
    ftp = server.ftp()
    names = ["a+b.txt", "100%25 sure.txt", "x&y=z?.txt", "Grüße 日本.txt", "~tilde#hash"]
    for i, name in enumerate(names):
        try:
            stor(ftp, name, name.encode() * (i + 1))
        except ftplib.Error as e:
            raise AssertionError(f"{name!r}: {e}\n{server.log()}")
    assert sorted(ftp.nlst()) == sorted(names)
    assert sorted(server.s3.keys()) == sorted("ftp/" + n for n in names)
    for i, name in enumerate(names):
        assert retr(ftp, name) == name.encode() * (i + 1)
        assert ftp.size(name) == len(name.encode()) * (i + 1)
    ftp.rename(names[0], "renamed+again.txt")
    assert server.s3.get("ftp/renamed+again.txt") == names[0].encode()
    ftp.quit()


def test_large_upload_is_multipart_with_two_parts_in_memory(s3_server):
    # 5 MiB parts (the minimum) so a 23 MiB file takes five parts.
    server = s3_server(config_extra='part_size = "5MiB"\nread_size = "1MiB"')
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    data = payload(23 * 1024 * 1024 + 17, seed=7)
    assert stor(ftp, "big.bin", data).startswith("226")
    assert server.s3.get("ftp/big.bin") == data
    assert server.s3.uploads() == []
    # Read back through 1 MiB ranged GETs, from the start and from an offset.
    assert retr(ftp, "big.bin") == data
    assert retr(ftp, "big.bin", rest=9_999_999) == data[9_999_999:]
    ftp.quit()


def test_aborted_upload_leaves_no_object_and_no_upload(s3_server):
    server = s3_server(config_extra='part_size = "5MiB"')
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    stor(ftp, "keep.bin", b"old content")
    conn = ftp.transfercmd("STOR keep.bin")
    conn.sendall(payload(12 * 1024 * 1024))  # two full parts sent already
    ftp.putcmd("ABOR")
    conn.close()
    reply = ftp.getmultiline()
    if reply.startswith("426"):
        reply = ftp.getmultiline()
    assert reply[:3] in ("225", "226"), reply
    # The old file is untouched and no multipart upload is left behind.
    assert ftp.sendcmd("NOOP").startswith("200")
    assert retr(ftp, "keep.bin") == b"old content"
    assert server.s3.get("ftp/keep.bin") == b"old content"
    # The plugin aborts the upload when the host releases the writer, right
    # after the part it was sending is answered.
    wait_until(lambda: server.s3.uploads() == [], server)
    ftp.quit()


def test_upload_cut_by_a_connection_reset_is_aborted(s3_server):
    server = s3_server(config_extra='part_size = "5MiB"')
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR cut.bin")
    conn.sendall(payload(11 * 1024 * 1024))
    # A reset, not a close: the upload did not end, it broke.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    with pytest.raises(ftplib.error_temp, match="^4"):
        ftp.voidresp()
    wait_until(lambda: server.s3.uploads() == [], server)
    assert server.s3.get("ftp/cut.bin") is None
    ftp.quit()


def test_session_ending_mid_upload_aborts_it(s3_server):
    server = s3_server(config_extra='part_size = "5MiB"')
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR gone.bin")
    conn.sendall(payload(11 * 1024 * 1024))
    # The client's control connection goes away while the data connection
    # is still open: the session ends, the upload never finished.
    ftp.sock.shutdown(socket.SHUT_RDWR)
    ftp.sock.close()
    server.wait_for_log("transfer aborted|session.*(closed|ended)")
    wait_until(lambda: server.s3.uploads() == [], server)
    conn.close()
    assert server.s3.get("ftp/gone.bin") is None


def test_appe_and_resumed_stor(s3_server):
    server = s3_server(config_extra='part_size = "5MiB"')
    ftp = server.ftp()
    ftp.voidcmd("TYPE I")
    # A small file: re-uploaded through the plugin with the new bytes.
    stor(ftp, "log.txt", b"one\n")
    stor(ftp, "log.txt", b"two\n", cmd="APPE")
    assert retr(ftp, "log.txt") == b"one\ntwo\n"
    # APPE creates a missing file.
    stor(ftp, "new.txt", b"fresh", cmd="APPE")
    assert retr(ftp, "new.txt") == b"fresh"

    # A large one: its bytes are copied inside the store (UploadPartCopy).
    first = payload(6 * 1024 * 1024, seed=3)
    second = payload(3 * 1024 * 1024 + 5, seed=4)
    stor(ftp, "movie.bin", first)
    stor(ftp, "movie.bin", second, cmd="APPE")
    assert server.s3.get("ftp/movie.bin") == first + second

    # REST n + STOR continues where the file ends...
    third = b"the end"
    size = ftp.size("movie.bin")
    assert stor(ftp, "movie.bin", third, rest=size).startswith("226")
    assert retr(ftp, "movie.bin") == first + second + third
    # ...and is refused anywhere else, with 554 (RFC 3659).
    with pytest.raises(ftplib.error_perm, match="^554"):
        stor(ftp, "movie.bin", b"x", rest=10)
    assert server.s3.uploads() == []
    ftp.quit()


def test_rename(s3_server):
    server = s3_server()
    ftp = server.ftp()
    stor(ftp, "a.txt", b"alpha")
    ftp.rename("a.txt", "b.txt")
    assert server.s3.get("ftp/a.txt") is None
    assert server.s3.get("ftp/b.txt") == b"alpha"
    # Onto an existing file: replaced.
    stor(ftp, "c.txt", b"gamma")
    ftp.rename("c.txt", "b.txt")
    assert retr(ftp, "b.txt") == b"gamma"
    # An empty directory moves; one with files is refused with a clear 550.
    ftp.mkd("empty")
    ftp.rename("empty", "moved")
    assert sorted(ftp.nlst()) == ["b.txt", "moved"]
    ftp.mkd("full")
    stor(ftp, "full/f.txt", b"f")
    with pytest.raises(ftplib.error_perm, match="^550.*directory that has files"):
        ftp.rename("full", "elsewhere")
    assert retr(ftp, "full/f.txt") == b"f"
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.rename("missing", "x")
    ftp.quit()


def test_prefix_per_user_keeps_users_apart(s3_server):
    users = {"alice": ("alice-pw", "all"), "bob": ("bob-pw", "all")}
    server = s3_server(users=users, prefix="home/{user}")
    alice = server.ftp("alice", "alice-pw")
    bob = server.ftp("bob", "bob-pw")
    stor(alice, "mine.txt", b"alice's")
    stor(bob, "mine.txt", b"bob's")
    assert retr(alice, "mine.txt") == b"alice's"
    assert retr(bob, "mine.txt") == b"bob's"
    assert sorted(server.s3.keys()) == ["home/alice/mine.txt", "home/bob/mine.txt"]
    alice.quit()
    bob.quit()


def test_secret_from_the_environment(make_server, s3_area, monkeypatch):
    client, bucket = s3_area.client, s3_area.bucket
    monkeypatch.setenv("WASMFTPD_TEST_S3_SECRET", SECRET_KEY)
    sites = s3_site(
        client.endpoint,
        bucket,
        DEMO,
        storage_extra='[site.main.storage.config_env]\nsecret_access_key = "WASMFTPD_TEST_S3_SECRET"',
        config_extra=f"prefix = {toml_str(s3_area.prefix)}",
        secret_in_file=False,
    )
    server = make_server(sites=sites)
    assert SECRET_KEY not in server.config_path.read_text()
    ftp = server.ftp()
    stor(ftp, "f.txt", b"signed with the secret from the environment")
    assert s3_area.get("f.txt") == b"signed with the secret from the environment"
    ftp.quit()


def test_wrong_secret_and_unreachable_store_give_clear_errors(make_server, s3_area):
    client, bucket = s3_area.client, s3_area.bucket
    sites = s3_site(client.endpoint, bucket, DEMO).replace(
        f"secret_access_key = {toml_str(SECRET_KEY)}", 'secret_access_key = "wrong"'
    )
    server = make_server(sites=sites)
    ftp = server.ftp()
    with pytest.raises(ftplib.error_perm, match="^550"):
        stor(ftp, "f.txt", b"x")
    ftp.quit()
    server.wait_for_log("storage-s3: .*403")
    server.stop()

    # Nothing listens on the endpoint: 450 (try again later), not a crash.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    server = make_server(sites=s3_site(dead, bucket, DEMO))
    ftp = server.ftp()
    with pytest.raises(ftplib.error_temp, match="^450"):
        ftp.nlst()
    assert ftp.sendcmd("NOOP").startswith("200")
    ftp.quit()


def test_endpoint_must_be_granted(make_server, s3_area):
    client, bucket = s3_area.client, s3_area.bucket
    sites = s3_site(client.endpoint, bucket, DEMO).replace(
        f"allowed_hosts = [{toml_str(client.endpoint)}]", "allowed_hosts = []"
    )
    server = make_server(sites=sites)
    ftp = server.ftp()
    with pytest.raises(ftplib.Error, match="^45"):
        ftp.nlst()
    server.wait_for_log("denied")
    ftp.quit()


def test_curl_upload_and_download(s3_server, tmp_path):
    server = s3_server()
    src = tmp_path / "src.bin"
    data = payload(2 * 1024 * 1024 + 3, seed=9)
    src.write_bytes(data)
    subprocess.run(
        ["curl", "-sS", "--ftp-create-dirs", "-T", str(src), server.url("dir/sub/via-curl.bin")],
        check=True,
        timeout=60,
    )
    assert server.s3.get("ftp/dir/sub/via-curl.bin") == data
    got = subprocess.run(
        ["curl", "-sS", server.url("dir/sub/via-curl.bin")], check=True, capture_output=True, timeout=60
    ).stdout
    assert got == data
