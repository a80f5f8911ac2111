"""End to end with Python's ftplib: login, navigation, transfers in every data
connection mode, TYPE A, REST, rename, MLSD, UTF-8 names and refusals."""

import ftplib
import hashlib
import io
import os
import socket
import struct
import time

import pytest

from conftest import site_toml


def payload(size, seed=1):
    """Deterministic binary data with every byte value (including CR and LF)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        out += block + bytes(range(256))
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


def retr(client, path, rest=None):
    buf = io.BytesIO()
    client.retrbinary(f"RETR {path}", buf.write, rest=rest)
    return buf.getvalue()


def test_banner_login_and_quit(server):
    client = server.ftp(user=None)
    assert client.getwelcome().startswith("220")
    assert client.login("demo", "demo").startswith("230")
    assert client.sendcmd("SYST") == "215 UNIX Type: L8"
    assert client.quit().startswith("221")


def test_wrong_password_is_refused(server):
    client = server.ftp(user=None)
    with pytest.raises(ftplib.error_perm, match="^530"):
        client.login("demo", "wrong")
    # The session is still usable after a failed login.
    assert client.login("demo", "demo").startswith("230")


def test_commands_before_login_get_530(server):
    client = server.ftp(user=None)
    with pytest.raises(ftplib.error_perm, match="^530"):
        client.sendcmd("PWD")
    assert client.sendcmd("NOOP").startswith("200")
    feat = client.sendcmd("FEAT")
    assert "211" in feat and "EPSV" in feat and "MLST" in feat


def data_connection(client, mode, command):
    """Sends `command` over a data connection set up with `mode` (PASV, EPSV,
    PORT or EPRT, all by hand so each mode is really used) and returns the
    connected data socket."""
    if mode in ("PASV", "EPSV"):
        reply = client.sendcmd(mode)
        if mode == "PASV":
            host, port = ftplib.parse227(reply)
        else:
            host, port = client.host, ftplib.parse229(reply, client.sock.getpeername())[1]
        sock = socket.create_connection((host, port), timeout=20)
        resp = client.sendcmd(command)
        assert resp.startswith(("125", "150")), resp
        return sock
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]
    if mode == "PORT":
        client.sendcmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}")
    else:
        client.sendcmd(f"EPRT |1|127.0.0.1|{port}|")
    resp = client.sendcmd(command)
    assert resp.startswith(("125", "150")), resp
    sock, _ = listener.accept()
    listener.close()
    return sock


@pytest.mark.parametrize("mode", ["PASV", "EPSV", "PORT", "EPRT"])
def test_binary_round_trip_in_every_data_mode(server, mode):
    data = payload(3 * 1024 * 1024 + 17, seed=mode)
    client = server.ftp()
    client.voidcmd("TYPE I")
    sock = data_connection(client, mode, f"STOR up-{mode}.bin")
    sock.sendall(data)
    sock.close()
    assert client.voidresp().startswith("226")
    assert (server.root / f"up-{mode}.bin").read_bytes() == data

    sock = data_connection(client, mode, f"RETR up-{mode}.bin")
    got = bytearray()
    while chunk := sock.recv(1 << 20):
        got += chunk
    sock.close()
    assert client.voidresp().startswith("226")
    assert bytes(got) == data
    assert client.size(f"up-{mode}.bin") == len(data)
    client.quit()


def test_navigation_mkd_rmd_dele(server):
    client = server.ftp()
    assert client.pwd() == "/"
    assert client.mkd("dir one") == "/dir one"
    client.cwd("dir one")
    assert client.pwd() == "/dir one"
    client.storbinary("STOR f.txt", io.BytesIO(b"hello"))
    assert (server.root / "dir one" / "f.txt").read_bytes() == b"hello"
    client.sendcmd("CDUP")
    assert client.pwd() == "/"
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.rmd("dir one")  # not empty
    client.delete("dir one/f.txt")
    client.rmd("dir one")
    assert not (server.root / "dir one").exists()
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.cwd("nowhere")


def test_cannot_escape_home(server, tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    client = server.ftp()
    client.cwd("../../..")
    assert client.pwd() == "/"
    with pytest.raises(ftplib.error_perm, match="^550"):
        retr(client, "../secret.txt")
    with pytest.raises(ftplib.error_perm, match="^550"):
        retr(client, str(tmp_path / "secret.txt"))


def test_type_a_converts_line_endings(server):
    (server.root / "unix.txt").write_bytes(b"one\ntwo\nthree\n")
    client = server.ftp()
    lines = []
    client.retrlines("RETR unix.txt", lines.append)
    assert lines == ["one", "two", "three"]
    # Raw bytes in TYPE A carry CRLF.
    client.voidcmd("TYPE A")
    conn = client.transfercmd("RETR unix.txt")
    raw = b""
    while chunk := conn.recv(65536):
        raw += chunk
    conn.close()
    client.voidresp()
    assert raw == b"one\r\ntwo\r\nthree\r\n"
    # Upload in TYPE A: CRLF becomes LF on disk.
    client.storlines("STOR dos.txt", io.BytesIO(b"a\r\nb\r\n"))
    assert (server.root / "dos.txt").read_bytes() == b"a\nb\n"
    # SIZE in TYPE A never gives a wrong number.
    client.voidcmd("TYPE A")
    try:
        assert client.size("unix.txt") == len(b"one\r\ntwo\r\nthree\r\n")
    except ftplib.error_perm as e:
        assert str(e).startswith("550")


def test_rest_resumes_download_and_upload(server):
    data = payload(1_000_000, seed="rest")
    (server.root / "big.bin").write_bytes(data)
    client = server.ftp()
    assert retr(client, "big.bin", rest=400_000) == data[400_000:]
    # Resume an upload: first part, then REST + STOR of the rest.
    client.storbinary("STOR part.bin", io.BytesIO(data[:300_000]))
    client.voidcmd("TYPE I")
    client.storbinary("STOR part.bin", io.BytesIO(data[300_000:]), rest=300_000)
    assert (server.root / "part.bin").read_bytes() == data


def test_appe_appends(server):
    client = server.ftp()
    client.storbinary("STOR log.txt", io.BytesIO(b"first\n"))
    client.storbinary("APPE log.txt", io.BytesIO(b"second\n"))
    assert (server.root / "log.txt").read_bytes() == b"first\nsecond\n"


def test_rnfr_rnto(server):
    (server.root / "old.txt").write_text("x")
    client = server.ftp()
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("RNTO new.txt")
    client.rename("old.txt", "new.txt")
    assert (server.root / "new.txt").read_text() == "x"
    assert not (server.root / "old.txt").exists()
    # Another command between RNFR and RNTO cancels the rename.
    assert client.sendcmd("RNFR new.txt").startswith("350")
    client.sendcmd("NOOP")
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("RNTO other.txt")


def test_mlsd_and_utf8_names(server):
    name = "grüße-日本.txt"
    (server.root / name).write_bytes(b"12345")
    (server.root / "sub").mkdir()
    client = server.ftp()
    client.encoding = "utf-8"
    client.sendcmd("OPTS UTF8 ON")
    entries = dict(client.mlsd())
    assert entries[name]["type"] == "file"
    assert entries[name]["size"] == "5"
    assert "modify" in entries[name]
    assert entries["sub"]["type"] == "dir"
    assert name in client.nlst()
    listing = []
    client.retrlines("LIST", listing.append)
    assert any(line.endswith(" " + name) and line.startswith("-") for line in listing), listing
    assert any(line.endswith(" sub") and line.startswith("d") for line in listing), listing
    assert retr(client, name) == b"12345"


def test_epsv_all_refuses_other_modes(server):
    client = server.ftp()
    assert client.sendcmd("EPSV ALL").startswith("200")
    for cmd in ("PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51210|"):
        with pytest.raises(ftplib.error_perm) as err:
            client.sendcmd(cmd)
        assert str(err.value)[:3] in ("501", "503", "504", "522"), cmd
    assert client.sendcmd("EPSV").startswith("229")


def test_port_bounce_is_refused(server):
    client = server.ftp()
    # Another host, and a privileged port on the client's own host.
    for cmd in ("PORT 10,9,8,7,200,10", "PORT 127,0,0,1,0,21", "EPRT |1|10.9.8.7|51210|"):
        with pytest.raises(ftplib.Error) as err:
            client.sendcmd(cmd)
        assert str(err.value)[:1] in ("5",), (cmd, err.value)


def test_passive_connection_from_another_address_is_rejected(server):
    (server.root / "secret.bin").write_bytes(b"s" * 1000)
    client = server.ftp()
    client.voidcmd("TYPE I")
    reply = client.sendcmd("EPSV")
    port = ftplib.parse229(reply, client.sock.getpeername())[1]
    # 127.0.0.2 is loopback on Linux, but not the control connection's address.
    intruder = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
    intruder.settimeout(3)
    client.putcmd("RETR secret.bin")
    try:
        stolen = intruder.recv(10)
    except (ConnectionResetError, socket.timeout):
        stolen = b""
    intruder.close()
    assert stolen == b"", "data went to a foreign address"
    # The real client may still connect (the server kept waiting) or the
    # transfer was refused with 425; both are safe.
    try:
        legit = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        legit = None
    first = client.getmultiline()
    if first.startswith("425"):
        return
    assert first.startswith(("125", "150")), first
    assert legit is not None
    got = b""
    while chunk := legit.recv(65536):
        got += chunk
    legit.close()
    assert got == b"s" * 1000
    assert client.getmultiline().startswith("226")


def test_permissions_are_enforced(server):
    (server.root / "readme.txt").write_text("ro")
    client = server.ftp("reader", "reader")
    assert retr(client, "readme.txt") == b"ro"
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.storbinary("STOR new.txt", io.BytesIO(b"no"))
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.delete("readme.txt")
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.mkd("d")
    assert not (server.root / "new.txt").exists()


def test_unknown_and_unsupported_commands(server):
    client = server.ftp()
    with pytest.raises(ftplib.error_perm, match="^500"):
        client.sendcmd("FROB")
    with pytest.raises(ftplib.error_perm, match="^504"):
        client.sendcmd("MODE B")
    with pytest.raises(ftplib.error_perm, match="^504"):
        client.sendcmd("STRU R")
    assert client.sendcmd("ALLO 100").startswith("202")
    assert client.sendcmd("STRU F").startswith("200")


def test_abor_cuts_a_running_download(server):
    (server.root / "huge.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    client = server.ftp()
    conn = client.transfercmd("RETR huge.bin")
    conn.recv(65536)  # the transfer is running
    client.putcmd("ABOR")
    conn.close()
    replies = client.getmultiline()
    # 426 for the cut transfer then 226 for the ABOR (or just 226 if it had ended).
    if replies.startswith("426"):
        replies = client.getmultiline()
    assert replies.startswith("226") or replies.startswith("225"), replies
    assert client.sendcmd("NOOP").startswith("200")


def test_stor_interrupted_keeps_received_bytes(server):
    client = server.ftp()
    client.voidcmd("TYPE I")
    conn = client.transfercmd("STOR cut.bin")
    conn.sendall(b"a" * 100_000)
    conn.close()
    client.voidresp()
    assert (server.root / "cut.bin").read_bytes() == b"a" * 100_000


def test_large_stor_cut_by_a_reset_keeps_a_prefix(make_server, tmp_path):
    """Past its first 256 KiB a binary upload is moved socket -> pipe -> file
    in the kernel (splice; storage-fs's stream path). Written in place here
    (`atomic_uploads = false`): cut by a reset half-way, it keeps a prefix of
    what was sent, the client gets 426 and the session goes on."""
    sites = site_toml("main", {"demo": ("demo", "all")}, tmp_path / "root")
    server = make_server(sites=sites + "[site.main.storage.config]\natomic_uploads = false\n")
    data = payload(6 * 1024 * 1024, seed="cut")
    client = server.ftp()
    client.voidcmd("TYPE I")
    conn = client.transfercmd("STOR cutbig.bin")
    conn.sendall(data[: 4 * 1024 * 1024])
    target = server.root / "cutbig.bin"
    deadline = time.monotonic() + 10
    while target.stat().st_size < 2 * 1024 * 1024:
        assert time.monotonic() < deadline, "the server stored too little too slowly"
        time.sleep(0.01)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    reply = client.getmultiline()
    assert reply.startswith("426"), reply
    kept = target.read_bytes()
    assert 2 * 1024 * 1024 <= len(kept) <= 4 * 1024 * 1024
    assert kept == data[: len(kept)]
    assert client.sendcmd("NOOP").startswith("200")


def test_line_too_long_is_refused(server):
    client = server.ftp()
    client.sock.sendall(b"NOOP " + b"x" * 20000 + b"\r\n")
    reply = client.getmultiline()
    assert reply.startswith("500"), reply
    # Either the connection is closed, or it keeps working.
    try:
        assert client.sendcmd("NOOP").startswith("200")
    except (EOFError, ConnectionError, ftplib.error_temp):
        pass


def test_server_survives_client_vanishing_mid_transfer(server):
    (server.root / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    client = server.ftp()
    conn = client.transfercmd("RETR big.bin")
    conn.recv(1000)
    conn.close()
    client.sock.close()
    # A fresh session works.
    other = server.ftp()
    assert retr(other, "big.bin")[:10] == (server.root / "big.bin").read_bytes()[:10]


def test_ipv6_control_and_data_connections(make_server):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = make_server(extra_args=("--listen", "[::1]:0"))
    assert server.host == "::1"
    data = payload(700_000, seed="v6")
    client = server.ftp()
    assert client.af == socket.AF_INET6
    # ftplib uses EPSV for passive and EPRT (protocol 2) for active over IPv6.
    client.storbinary("STOR v6.bin", io.BytesIO(data))
    assert retr(client, "v6.bin") == data
    client.set_pasv(False)
    assert retr(client, "v6.bin") == data
    client.storbinary("STOR v6-active.bin", io.BytesIO(data[:1000]))
    assert (server.root / "v6-active.bin").read_bytes() == data[:1000]
    client.quit()


def epsv_port(client):
    return ftplib.parse229(client.sendcmd("EPSV"), client.sock.getpeername())[1]


def test_passive_port_is_reused_between_transfers(server):
    """Consecutive transfers in one session get the same passive port (the
    server keeps its listener), and every transfer still moves the right
    bytes."""
    client = server.ftp()
    client.voidcmd("TYPE I")
    ports = set()
    for i in range(5):
        data = payload(4096 + i, seed=i)
        port = epsv_port(client)
        ports.add(port)
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.putcmd(f"STOR small-{i}.bin")
        assert client.getmultiline().startswith("150")
        conn.sendall(data)
        conn.close()
        assert client.getmultiline().startswith("226")
        assert (server.root / f"small-{i}.bin").read_bytes() == data
        assert retr(client, f"small-{i}.bin") == data
    # ftplib's own RETR above asked for PASV; all of them share one port.
    assert len(ports) == 1, ports


def test_reused_passive_port_ignores_an_abandoned_connection(server):
    """A client that connects after EPSV but never transfers, then asks again,
    must get its new connection used, not the abandoned one: an upload that
    went to the stale connection would store an empty file."""
    client = server.ftp()
    client.voidcmd("TYPE I")
    first = epsv_port(client)
    stale = socket.create_connection(("127.0.0.1", first), timeout=5)
    second = epsv_port(client)
    assert second == first
    fresh = socket.create_connection(("127.0.0.1", second), timeout=5)
    client.putcmd("STOR kept.bin")
    assert client.getmultiline().startswith("150")
    data = payload(10000, seed=7)
    fresh.sendall(data)
    fresh.close()
    assert client.getmultiline().startswith("226")
    assert (server.root / "kept.bin").read_bytes() == data
    # The server dropped the stale connection rather than leaving it open.
    stale.settimeout(5)
    try:
        assert stale.recv(1) == b""
    except ConnectionResetError:
        pass
    stale.close()


def test_wildcards_work_like_mget(server):
    """What a classic client's `mget dir/*.txt` does: NLST with a wildcard,
    then RETR each returned name as it is."""
    (server.root / "docs").mkdir()
    wanted = {}
    for i in range(3):
        data = payload(1000 + i, seed=i)
        (server.root / "docs" / f"part{i}.txt").write_bytes(data)
        wanted[f"docs/part{i}.txt"] = data
    (server.root / "docs" / "notes.md").write_bytes(b"not this")
    (server.root / "docs" / ".secret.txt").write_bytes(b"nor this")
    client = server.ftp()
    client.voidcmd("TYPE I")
    names = client.nlst("docs/*.txt")
    assert sorted(names) == sorted(wanted)
    for name in names:
        assert retr(client, name) == wanted[name]
    listing = []
    client.retrlines("LIST docs/part?.txt", listing.append)
    assert len(listing) == 3 and all(line.startswith("-rw") for line in listing)
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.nlst("docs/*.zip")
