"""FTPS end to end (RFC 4217): explicit AUTH TLS and implicit TLS, with curl,
lftp and Python's ftplib, in every data-connection mode, against the real
binary. Certificates come from `wasmftpd tls self-signed`.

curl 7.88 (Debian 12) lost TLS on *active* FTP data connections (curl PR
#10669, fixed in 8.0), so PORT/EPRT over TLS are driven by lftp and ftplib.
"""

import ftplib
import hashlib
import io
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BINARY, REPO, SERVER_DEFAULTS, site_toml, start_server, toml_str
from test_language_plugins import plugins, sha_crypt  # noqa: F401 (a fixture)


def self_signed(directory, *names):
    """A certificate and key written by the binary's own helper."""
    args = [str(BINARY), "tls", "self-signed", "--out", str(directory)]
    for name in names or ("localhost", "127.0.0.1"):
        args += ["--name", name]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    return directory / "cert.pem", directory / "key.pem"


def tls_block(table, cert, key, **settings):
    lines = [f"[{table}]", f"certificate = {toml_str(str(cert))}", f"key = {toml_str(str(key))}"]
    for name, value in settings.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        else:
            value = toml_str(str(value))
        lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def client_context():
    """Accepts the self-signed certificate (what `curl -k` does)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ReusingFTP(ftplib.FTP_TLS):
    """FTP_TLS that resumes the control connection's TLS session on data
    connections, as curl, lftp and FileZilla do. `mode` picks PASV, EPSV,
    PORT or EPRT."""

    mode = "PASV"

    def makepasv(self):
        if self.mode == "EPSV":
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        return super().makepasv()

    def makeport(self):
        if self.mode != "EPRT":
            return super().makeport()
        sock = socket.create_server(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.voidcmd(f"EPRT |1|127.0.0.1|{port}|")
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        return sock

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def connect_tls(port, cls=ReusingFTP, mode="PASV", user="demo", password="demo", implicit=False):
    client = cls(context=client_context(), timeout=20)
    client.mode = mode
    client.set_pasv(mode in ("PASV", "EPSV"))
    if implicit:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        client.sock = client.context.wrap_socket(raw, server_hostname="127.0.0.1")
        client.af = client.sock.family
        client.file = client.sock.makefile("r", encoding=client.encoding)
        client.welcome = client.getresp()
        client.host = "127.0.0.1"
    else:
        client.connect("127.0.0.1", port)
        client.auth()
    if user is not None:
        client.login(user, password)
        client.prot_p()
    return client


def retr(client, path):
    buf = io.BytesIO()
    client.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def curl(*args, check=True):
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "120", "-k", *map(str, args)],
        capture_output=True,
        timeout=180,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"curl {args} failed ({result.returncode}): {result.stderr.decode()}")
    return result


def lftp(port, script, protect=True):
    settings = (
        "set ftp:ssl-force yes; set ssl:verify-certificate no; "
        f"set ftp:ssl-protect-data {'yes' if protect else 'no'}; "
        "set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; "
    )
    result = subprocess.run(
        ["lftp", "-u", "demo,demo", "-p", str(port), "-e", settings + script + "; quit", "127.0.0.1"],
        capture_output=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return result.stdout.decode()


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    return self_signed(d)


@pytest.fixture
def ftps(make_server, certs):
    """Factory: a server with [server.tls] and an implicit listener; the
    plain/explicit port is `.port`, the implicit one `.implicit_port`."""

    def make(**tls_settings):
        server = make_server(
            server_extra='implicit_tls_listen = ["127.0.0.1:0"]\n' + tls_block("server.tls", *certs, **tls_settings),
            expect_listeners=2,
        )
        server.implicit_port = server.addrs[1][1]
        return server

    return make


def test_feat_lists_tls_only_where_offered(ftps, make_server):
    server = ftps()
    feat = server.ftp(user=None).sendcmd("FEAT")
    for line in ("AUTH TLS", "PBSZ", "PROT"):
        assert f"\n {line}\n" in feat.replace("\r", ""), feat
    plain = make_server()
    plain_feat = plain.ftp(user=None).sendcmd("FEAT")
    assert "AUTH TLS" not in plain_feat
    client = plain.ftp(user=None)
    with pytest.raises(ftplib.error_perm, match="^502"):
        client.sendcmd("AUTH TLS")


def test_curl_explicit_download_upload_listing(ftps, tmp_path):
    server = ftps()
    data = os.urandom(3 * 1024 * 1024 + 5)
    (server.root / "down.bin").write_bytes(data)
    out = tmp_path / "down.bin"
    url = f"ftp://demo:demo@127.0.0.1:{server.port}"
    curl("--ssl-reqd", f"{url}/down.bin", "-o", out)
    assert out.read_bytes() == data
    curl("--ssl-reqd", "--disable-epsv", f"{url}/down.bin", "-o", out)  # PASV
    assert out.read_bytes() == data
    up = tmp_path / "up.bin"
    up.write_bytes(data[::-1])
    curl("--ssl-reqd", "-T", up, f"{url}/")
    assert (server.root / "up.bin").read_bytes() == data[::-1]
    names = curl("--ssl-reqd", "--list-only", f"{url}/").stdout.decode().split()
    assert sorted(names) == ["down.bin", "up.bin"]
    log = server.log()
    assert "control connection secured" in log and "TLSv1_3" in log, log


def test_curl_control_only_tls_sends_data_in_clear(ftps, tmp_path):
    """`--ftp-ssl-control`: TLS for the login, clear data (PROT C) where
    TLS is not required."""
    server = ftps()
    (server.root / "c.txt").write_bytes(b"clear data\n")
    out = curl("--ftp-ssl-control", f"ftp://demo:demo@127.0.0.1:{server.port}/c.txt").stdout
    assert out == b"clear data\n"


def test_curl_implicit(ftps, tmp_path):
    server = ftps()
    data = os.urandom(1024 * 1024 + 1)
    (server.root / "i.bin").write_bytes(data)
    url = f"ftps://demo:demo@127.0.0.1:{server.implicit_port}"
    out = tmp_path / "i.bin"
    curl(f"{url}/i.bin", "-o", out)
    assert out.read_bytes() == data
    curl("-T", out, f"{url}/back.bin")
    assert (server.root / "back.bin").read_bytes() == data


def test_64_mib_both_ways_byte_exact(ftps, tmp_path):
    server = ftps()
    data = os.urandom(64 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    (server.root / "big.bin").write_bytes(data)
    url = f"ftp://demo:demo@127.0.0.1:{server.port}"
    out = tmp_path / "big.bin"
    curl("--ssl-reqd", f"{url}/big.bin", "-o", out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    curl("--ssl-reqd", "-T", out, f"{url}/big-up.bin")
    assert hashlib.sha256((server.root / "big-up.bin").read_bytes()).hexdigest() == digest


def test_rest_and_type_a_over_tls(ftps):
    # A binary RETR of a local file is read on the sending thread over TLS,
    # from the REST offset; TYPE A goes through the converting path.
    server = ftps()
    data = os.urandom(3 * 256 * 1024 + 11)
    (server.root / "r.bin").write_bytes(data)
    (server.root / "t.txt").write_bytes(b"one\ntwo\n" * 50_000)
    client = connect_tls(server.port)
    for offset in (1, 256 * 1024, len(data) - 5, len(data)):
        buf = io.BytesIO()
        client.retrbinary("RETR r.bin", buf.write, rest=offset)
        assert buf.getvalue() == data[offset:]
    lines = []
    client.retrlines("RETR t.txt", lines.append)
    assert lines == ["one", "two"] * 50_000
    assert retr(client, "r.bin") == data
    client.quit()


def test_lftp_passive_and_active(ftps, tmp_path):
    server = ftps()
    data = os.urandom(2 * 1024 * 1024 + 3)
    (server.root / "l.bin").write_bytes(data)
    local = tmp_path / "local"
    local.mkdir()
    (local / "u.bin").write_bytes(data[:777_777])
    lftp(
        server.port,
        f"get l.bin -o {local}/p.bin; put {local}/u.bin -o up-passive.bin; "
        f"set ftp:passive-mode no; get l.bin -o {local}/a.bin; put {local}/u.bin -o up-active.bin; cls /",
    )
    assert (local / "p.bin").read_bytes() == data
    assert (local / "a.bin").read_bytes() == data
    assert (server.root / "up-passive.bin").read_bytes() == data[:777_777]
    assert (server.root / "up-active.bin").read_bytes() == data[:777_777]


@pytest.mark.parametrize("mode", ["PASV", "EPSV", "PORT", "EPRT"])
def test_reusing_client_in_every_mode(ftps, mode):
    server = ftps()
    data = os.urandom(700_000)
    client = connect_tls(server.port, mode=mode)
    client.storbinary("STOR m.bin", io.BytesIO(data))
    assert (server.root / "m.bin").read_bytes() == data
    assert retr(client, "m.bin") == data
    assert client.nlst() == ["m.bin"]
    facts = dict(client.mlsd())
    assert facts["m.bin"]["size"] == str(len(data))
    listing = []
    client.retrlines("LIST", listing.append)
    assert listing and listing[0].endswith(" m.bin")
    client.quit()


def test_implicit_with_a_reusing_client(ftps):
    server = ftps()
    (server.root / "x.txt").write_bytes(b"implicit\n")
    client = connect_tls(server.implicit_port, implicit=True, user=None)
    assert client.welcome.startswith("220")
    client.login("demo", "demo")
    # Data connections are protected from the start on implicit listeners:
    # a client that does not know that (ftplib's flag) cannot transfer.
    conn = client.transfercmd("RETR x.txt")
    conn.sendall(b"clear text, not a TLS handshake\r\n")
    with pytest.raises(ftplib.error_temp, match="^425.*TLS"):
        client.voidresp()
    conn.close()
    client._prot_p = True
    assert retr(client, "x.txt") == b"implicit\n"
    client.prot_p()  # PBSZ and PROT P are accepted too
    with pytest.raises(ftplib.error_perm, match="^534"):
        client.sendcmd("PROT C")
    client.quit()


def test_fresh_tls_session_on_data_connection_is_refused(ftps):
    """Stock ftplib never resumes the session: with require_session_reuse
    (the default) its data connections are refused, so a stranger who
    connects to a passive port first cannot take the data."""
    server = ftps()
    (server.root / "secret.txt").write_bytes(b"secret\n")
    client = connect_tls(server.port, cls=ftplib.FTP_TLS)
    with pytest.raises(ftplib.error_temp, match="^425.*reuse"):
        retr(client, "secret.txt")
    # The control connection is still in step.
    assert client.voidcmd("NOOP").startswith("200")
    assert "data connection refused" in server.wait_for_log("data connection refused")


def test_a_session_of_another_control_connection_is_refused(ftps):
    """Each control connection has its own session cache and ticket key:
    resuming another connection's session (someone logged in on their own,
    now racing for this client's passive port) is a full handshake here,
    and refused."""
    server = ftps()
    (server.root / "mine.txt").write_bytes(b"mine\n")
    shared = client_context()
    victim = ReusingFTP(context=shared, timeout=20)
    victim.connect("127.0.0.1", server.port)
    victim.auth()
    victim.login("demo", "demo")
    victim.prot_p()
    assert retr(victim, "mine.txt") == b"mine\n"

    class Borrowing(ReusingFTP):
        def ntransfercmd(self, cmd, rest=None):
            conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=victim.sock.session)
            return conn, size

    other = Borrowing(context=shared, timeout=20)
    other.connect("127.0.0.1", server.port)
    other.auth()
    other.login("demo", "demo")
    other.prot_p()
    with pytest.raises(ftplib.error_temp, match="^425.*reuse"):
        retr(other, "mine.txt")
    victim.quit()
    other.quit()


def test_stock_ftplib_works_with_reuse_off(ftps):
    server = ftps(require_session_reuse=False)
    data = os.urandom(900_001)
    client = connect_tls(server.port, cls=ftplib.FTP_TLS)
    client.storbinary("STOR f.bin", io.BytesIO(data))
    assert retr(client, "f.bin") == data
    client.set_pasv(False)  # PORT
    assert retr(client, "f.bin") == data
    client.quit()


def test_required_refuses_clear_logins_and_clear_data(ftps):
    server = ftps(required=True)
    (server.root / "r.txt").write_bytes(b"r\n")
    plain = ftplib.FTP(timeout=20)
    plain.connect("127.0.0.1", server.port)
    with pytest.raises(ftplib.error_perm, match="^530.*TLS"):
        plain.login("demo", "demo")
    client = connect_tls(server.port, user=None)
    client.login("demo", "demo")
    # PBSZ/PROT not given yet: data would be clear.
    client.sendcmd("PASV")
    with pytest.raises(ftplib.error_perm, match="^521"):
        client.sendcmd("RETR r.txt")
    client.sendcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match="^534"):
        client.sendcmd("PROT C")
    client.prot_p()
    assert retr(client, "r.txt") == b"r\n"
    client.quit()
    result = curl(f"ftp://demo:demo@127.0.0.1:{server.port}/r.txt", check=False)
    assert result.returncode != 0


def test_rein_and_a_new_user_keep_tls(ftps, make_server):
    server = ftps(required=True)
    (server.root / "k.txt").write_bytes(b"kept\n")
    client = connect_tls(server.port)
    assert client.sendcmd("REIN").startswith("220")
    client.login("demo", "demo")  # still over TLS, so not refused
    assert retr(client, "k.txt") == b"kept\n"
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("AUTH TLS")
    with pytest.raises(ftplib.error_perm, match="^534"):
        client.sendcmd("CCC")
    client.quit()


def test_clear_text_pipelined_after_auth_is_never_run(ftps):
    server = ftps()
    (server.root / "keep.txt").write_bytes(b"keep\n")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    raw.recv(1024)  # greeting
    raw.sendall(b"AUTH TLS\r\nDELE keep.txt\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += raw.recv(1)
    assert reply.startswith(b"234")
    tls = client_context().wrap_socket(raw, server_hostname="127.0.0.1")
    f = tls.makefile("rwb")
    f.write(b"USER demo\r\n")
    f.flush()
    assert f.readline().startswith(b"331")
    f.write(b"PASS demo\r\n")
    f.flush()
    assert f.readline().startswith(b"230")
    f.write(b"SIZE keep.txt\r\n")
    f.flush()
    assert f.readline().startswith(b"213 ")
    assert (server.root / "keep.txt").exists()
    server.wait_for_log("dropped clear-text bytes")


def test_upload_cut_without_close_notify_fails(ftps):
    """A data connection that ends without TLS close_notify is a failed
    transfer (426), not a short file reported as complete."""
    server = ftps()
    client = connect_tls(server.port)
    conn = client.transfercmd("STOR cut.bin")
    conn.sendall(os.urandom(300_000))
    conn.shutdown(socket.SHUT_RDWR)  # TCP FIN, no close_notify
    conn.close()
    with pytest.raises(ftplib.error_temp, match="^426"):
        client.voidresp()
    client.quit()


def test_sni_picks_the_site_on_implicit_listener(make_server, tmp_path):
    a_cert = self_signed(tmp_path / "a", "a.test")
    b_cert = self_signed(tmp_path / "b", "b.test")
    roots = {}
    sites = ""
    for name, cert in (("alpha", a_cert), ("beta", b_cert)):
        root = tmp_path / f"root-{name}"
        root.mkdir()
        (root / "who.txt").write_text(name)
        roots[name] = root
        sites += site_toml(
            name,
            {"demo": ("demo", "all")},
            root,
            extra=f'host_names = ["{name[0]}.test"]\nbanner = "site {name}"',
        )
        sites += tls_block(f"site.{name}.tls", *cert)
    server = make_server(
        server_extra='implicit_tls_listen = ["127.0.0.1:0"]\ndefault_site = "alpha"\n',
        sites=sites,
        expect_listeners=2,
    )
    port = server.addrs[1][1]
    for name, cert in (("alpha", a_cert), ("beta", b_cert)):
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        tls = client_context().wrap_socket(raw, server_hostname=f"{name[0]}.test")
        assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(cert[0].read_text())
        f = tls.makefile("rwb")
        assert f.readline() == f"220 site {name}\r\n".encode()
        tls.close()
    # No name (or an unknown one): the listener's default site.
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    tls = client_context().wrap_socket(raw, server_hostname="other.test")
    assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(a_cert[0].read_text())
    tls.close()


def peer_certificate(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    raw.recv(1024)
    raw.sendall(b"AUTH TLS\r\n")
    assert raw.recv(1024).startswith(b"234")
    tls = client_context().wrap_socket(raw, server_hostname="127.0.0.1")
    der = tls.getpeercert(binary_form=True)
    tls.close()
    return der


def wait_for_new_log(server, seen, pattern, timeout=10):
    """The first log line after the first `seen` ones matching `pattern`."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in list(server.log_lines)[seen:]:
            if regex.search(line):
                return line
        time.sleep(0.02)
    raise AssertionError(f"log never matched {pattern!r}:\n{server.log()}")


def test_certificate_swapped_by_reload(ftps, certs, tmp_path):
    server = ftps()
    first = ssl.PEM_cert_to_DER_cert(certs[0].read_text())
    assert peer_certificate(server.port) == first
    session = connect_tls(server.port)  # logged in before the renewal
    renewed_dir = tmp_path / "renewed"
    renewed = self_signed(renewed_dir, "renewed.test")
    # Replace the files in place, as a renewal job does, then reload.
    certs[1].write_bytes(renewed[1].read_bytes())
    certs[0].write_bytes(renewed[0].read_bytes())
    server.proc.send_signal(signal.SIGHUP)
    wait_for_new_log(server, 0, "new certificate from")
    assert peer_certificate(server.port) == ssl.PEM_cert_to_DER_cert(renewed[0].read_text())
    # The session made before the reload goes on, data connections included.
    (server.root / "s.txt").write_bytes(b"still\n")
    assert retr(session, "s.txt") == b"still\n"
    session.quit()

    # A broken certificate: the reload fails, the log names the file and
    # the key, the renewed certificate stays in service.
    seen = len(server.log_lines)
    certs[0].write_text("not a certificate\n")
    server.proc.send_signal(signal.SIGHUP)
    line = wait_for_new_log(server, seen, r"reload .*failed.*server\.tls\.certificate")
    assert str(certs[0]) in line, line
    assert peer_certificate(server.port) == ssl.PEM_cert_to_DER_cert(renewed[0].read_text())


def check(config_path):
    return subprocess.run(
        [str(BINARY), "check", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "broken, key, words",
    [
        ("missing cert", "server.tls.certificate", "not found"),
        ("garbage cert", "server.tls.certificate", "no PEM certificate"),
        ("garbage key", "server.tls.key", "no PEM private key"),
        ("other key", "server.tls.key", "not a usable key"),
        ("bad version", "server.tls.min_version", "1.3"),
    ],
)
def test_bad_tls_settings_name_file_and_key(tmp_path, certs, broken, key, words):
    cert, private = certs
    root = tmp_path / "root"
    root.mkdir()
    settings = {}
    if broken == "missing cert":
        cert = tmp_path / "nope.pem"
    elif broken == "garbage cert":
        cert = tmp_path / "garbage.pem"
        cert.write_text("hello\n")
    elif broken == "garbage key":
        private = tmp_path / "garbage-key.pem"
        private.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    elif broken == "other key":
        private = self_signed(tmp_path / "other", "other.test")[1]
    elif broken == "bad version":
        settings["min_version"] = "1.1"
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS
        + tls_block("server.tls", cert, private, **settings)
        + site_toml("main", {"demo": ("demo", "all")}, root)
    )
    result = check(config)
    assert result.returncode != 0
    message = result.stderr
    assert str(config) in message and f"key `{key}`" in message and words in message, message
    if broken in ("garbage cert", "garbage key", "other key"):
        assert re.search(r"wasmftpd\.toml:\d+:", message), message
        named = cert if broken == "garbage cert" else private
        assert str(named) in message, message


def test_implicit_listener_needs_a_certificate(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS
        + 'implicit_tls_listen = ["127.0.0.1:0"]\n'
        + site_toml("main", {"demo": ("demo", "all")}, root)
    )
    result = check(config)
    assert result.returncode != 0
    assert "key `server.implicit_tls_listen`" in result.stderr, result.stderr


def test_min_version_1_3_refuses_tls_1_2(ftps):
    server = ftps(min_version="1.3")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    raw.recv(1024)
    raw.sendall(b"AUTH TLS\r\n")
    assert raw.recv(1024).startswith(b"234")
    ctx = client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    client = connect_tls(server.port)
    assert client.sock.version() == "TLSv1.3"
    client.quit()


def test_tls_1_2_resumption_with_a_reusing_client(ftps):
    """TLS 1.2 resumes by session ID or ticket; the per-connection cache
    and ticket key serve both."""
    server = ftps()
    (server.root / "t.txt").write_bytes(b"tls12\n")
    ctx = client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    client = ReusingFTP(context=ctx, timeout=20)
    client.connect("127.0.0.1", server.port)
    client.auth()
    client.login("demo", "demo")
    client.prot_p()
    assert client.sock.version() == "TLSv1.2"
    assert retr(client, "t.txt") == b"tls12\n"
    assert retr(client, "t.txt") == b"tls12\n"
    client.quit()


def test_javascript_auth_rules_require_tls(plugins, tmp_path, certs):
    """The auth plugin sees `credentials.tls`: the JavaScript auth-rules
    example's `require_tls` refuses a clear-text login and accepts the same
    one over TLS."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hi.txt").write_bytes(b"hi\n")
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS
        + tls_block("server.tls", *certs, require_session_reuse=False)
        + "[site.js.auth]\n"
        + f"plugin = {toml_str(str(plugins / 'auth-rules.wasm'))}\n"
        + "[site.js.auth.config]\n"
        + f'"users.eve.password" = {toml_str(sha_crypt("eve pw", "sha256"))}\n'
        + '"users.eve.require_tls" = "true"\n'
        + "[site.js.storage]\n"
        + 'plugin = "builtin:storage-fs"\n'
        + "[site.js.storage.dirs]\n"
        + f'"/" = {toml_str(str(root))}\n'
    )
    server = start_server(config)
    try:
        plain = ftplib.FTP(timeout=30)
        plain.connect("127.0.0.1", server.port)
        with pytest.raises(ftplib.error_perm, match="^530"):
            plain.login("eve", "eve pw")
        client = connect_tls(server.port, cls=ftplib.FTP_TLS, user="eve", password="eve pw")
        assert retr(client, "hi.txt") == b"hi\n"
        client.quit()
    finally:
        server.stop()


def test_the_ftps_quickstart_example(tmp_path):
    """examples/tls/quickstart-ftps.toml as its comment says to run it (in a
    copy, with a fresh certificate and free ports)."""
    example = REPO / "examples" / "tls" / "quickstart-ftps.toml"
    text = example.read_text().replace('"../quickstart-root"', toml_str(str(REPO / "examples" / "quickstart-root")))
    text = text.replace('implicit_tls_listen = ["127.0.0.1:2990"]', 'implicit_tls_listen = ["127.0.0.1:0"]')
    text = text.replace('listen = ["127.0.0.1:2121"]', 'listen = ["127.0.0.1:0"]')
    copy = tmp_path / "tls"
    self_signed(copy, "localhost", "127.0.0.1")
    config = copy / "quickstart-ftps.toml"
    config.write_text(text)
    server = start_server(config, expect_listeners=2)
    try:
        welcome = (REPO / "examples" / "quickstart-root" / "welcome.txt").read_bytes()
        got = curl("--ssl-reqd", f"ftp://demo:demo@127.0.0.1:{server.port}/welcome.txt").stdout
        assert got == welcome
        got = curl(f"ftps://demo:demo@127.0.0.1:{server.addrs[1][1]}/welcome.txt").stdout
        assert got == welcome
    finally:
        server.stop()
