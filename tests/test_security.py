"""Resource bounds under attack, with the real binary (issue 14): connections
that never log in are closed by `login_timeout` without stopping a real login,
and when they fill the server the oldest of them makes room for a new one;
running out of open files pauses `accept` and logs once, and the server serves
again afterwards; one session holds at most one passive listener."""

import ftplib
import resource
import selectors
import socket
import time

from conftest import start_server, SERVER_DEFAULTS, site_toml

IDLE_CONNECTIONS = 10_000


def raise_own_file_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_until_closed(socks, deadline):
    """Reads every socket until the server closes it; returns what each got."""
    got = {s: b"" for s in socks}
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_count = len(socks)
    while open_count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                got[s] += data
            else:
                sel.unregister(s)
                open_count -= 1
    sel.close()
    return got, open_count


def test_idle_connections_are_closed_by_login_timeout_and_never_block_a_login(make_server):
    limit = raise_own_file_limit(IDLE_CONNECTIONS + 200)
    count = min(IDLE_CONNECTIONS, limit - 200)
    assert count >= 1000, f"open file limit {limit} too low for this test"
    server = make_server(
        server_extra='login_timeout = "3s"\nmax_connections = 12000\nmax_connections_per_ip = 12000\n'
    )
    (server.root / "f.txt").write_bytes(b"hello")
    socks = []
    started = time.monotonic()
    try:
        # Connect in batches so the listen backlog never overflows (which
        # would only test the kernel's SYN retries).
        for _ in range(0, count, 250):
            batch = []
            for _ in range(250):
                if len(socks) + len(batch) >= count:
                    break
                s = socket.create_connection((server.host, server.port), timeout=10)
                batch.append(s)
            for s in batch:
                assert s.recv(64).startswith(b"220"), "greeting"
            socks.extend(batch)
        opened = time.monotonic() - started
        # All of them idle and not logged in: a real client still logs in
        # and downloads at once.
        t0 = time.monotonic()
        with server.ftp() as ftp:
            data = []
            ftp.retrbinary("RETR f.txt", data.append)
            assert b"".join(data) == b"hello"
        login_took = time.monotonic() - t0
        assert login_took < 2, f"a login took {login_took:.2f} s beside {count} idle connections"
        got, still_open = read_until_closed(socks, time.monotonic() + 30)
        assert still_open == 0, f"{still_open} of {count} connections were never closed"
        timed_out = sum(1 for data in got.values() if data.startswith(b"421 Login timeout"))
        assert timed_out == count, f"only {timed_out} of {count} got 421 Login timeout"
        print(f"{count} idle connections opened in {opened:.1f} s, login beside them {login_took * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()
    # And the server is fine afterwards.
    with server.ftp() as ftp:
        assert ftp.pwd() == "/"


def idle_connections(server, count, sources):
    """`count` connections that are greeted and then say nothing, spread over
    the loopback source addresses `sources`, oldest first."""
    socks = []
    for i in range(count):
        s = socket.create_connection(
            (server.host, server.port), timeout=10, source_address=(sources[i % len(sources)], 0)
        )
        socks.append(s)
        assert s.recv(64).startswith(b"220"), "greeting"
    return socks


def closed_with(sock, timeout=5):
    """What the server sent before closing `sock`, or None if it stays open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        return data


def test_a_full_server_closes_the_oldest_connection_not_logged_in_default_limits(make_server):
    # The defaults (max_connections 1000, 50 per address, login_timeout 60 s):
    # 20 addresses fill the server with connections that never log in.
    raise_own_file_limit(1300)
    server = make_server()
    (server.root / "f.txt").write_bytes(b"hello")
    sources = [f"127.0.0.{i}" for i in range(2, 22)]
    socks = idle_connections(server, 1000, sources)
    try:
        # One more from a full address is refused as before, closing nobody.
        s = socket.create_connection((server.host, server.port), timeout=10, source_address=(sources[0], 0))
        assert closed_with(s).startswith(b"421 too many connections from your address")
        s.close()
        # A real client logs in at once and downloads: the oldest idle
        # connection made room for it.
        t0 = time.monotonic()
        with server.ftp() as ftp:
            data = []
            ftp.retrbinary("RETR f.txt", data.append)
            assert b"".join(data) == b"hello"
            took = time.monotonic() - t0
            assert took < 2, f"a login beside a full server took {took:.2f} s"
            assert closed_with(socks[0]).startswith(b"421 Server full")
            # A second one: the next oldest goes, nobody else.
            with server.ftp() as second:
                assert second.pwd() == "/"
            assert closed_with(socks[1]).startswith(b"421 Server full")
            assert closed_with(socks[2], timeout=0.5) is None
            assert closed_with(socks[-1], timeout=0.5) is None
            assert ftp.voidcmd("NOOP").startswith("200")
        print(f"login beside 1000 idle connections (server full): {took * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()


def test_logged_in_sessions_are_never_closed_to_make_room(make_server):
    server = make_server(server_extra="max_connections = 4\n")
    sessions = [server.ftp() for _ in range(3)]
    rein = server.ftp()
    try:
        # REIN: the fourth is not logged in any more, so it makes room.
        assert rein.sendcmd("REIN").startswith("220")
        with server.ftp() as newcomer:
            assert newcomer.pwd() == "/"
            try:
                rein.voidcmd("NOOP")
                raise AssertionError("the logged-out session was not closed")
            except (ftplib.error_temp, EOFError, ConnectionError) as e:
                assert "Server full" in str(e) or isinstance(e, (EOFError, ConnectionError)), e
            # Now all four are logged in: a fifth is refused, and every
            # session goes on.
            s = socket.create_connection((server.host, server.port), timeout=10)
            assert closed_with(s).startswith(b"421 too many connections; try again later")
            s.close()
            for ftp in sessions + [newcomer]:
                assert ftp.voidcmd("NOOP").startswith("200")
        server.wait_for_log(r"closed to make room")
    finally:
        for ftp in sessions + [rein]:
            ftp.close()


def test_running_out_of_files_pauses_accept_logs_once_and_recovers(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "wasmftpd.toml"
    config.write_text(
        SERVER_DEFAULTS
        + "max_connections = 1000\nmax_connections_per_ip = 1000\n"
        + site_toml("main", {"demo": ("demo", "all")}, root)
    )

    def low_file_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    server = start_server(config, preexec_fn=low_file_limit)
    try:
        # The start-up warning says max_connections cannot fit.
        server.wait_for_log(r"max_connections = 1000 needs up to .* but the limit is 96")
        # Hold more connections than the server has descriptors for.
        socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(150)]
        server.wait_for_log(r"accept failed: .*out of open files", timeout=10)
        time.sleep(2)
        failures = [l for l in server.log_lines if "accept failed" in l]
        assert len(failures) <= 2, "\n".join(failures)
        for s in socks:
            s.close()
        # Once descriptors are free, the connections still waiting in the
        # backlog are served and so is a new client.
        deadline = time.monotonic() + 20
        while True:
            try:
                with server.ftp(timeout=5) as ftp:
                    assert ftp.pwd() == "/"
                break
            except (OSError, EOFError, ftplib.Error):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)
    finally:
        server.stop()


def test_one_pending_passive_listener_per_session(make_server):
    server = make_server(server_extra='passive_keep = "0s"\n')
    with server.ftp() as ftp:
        ports = []
        for _ in range(20):
            ports.append(int(ftp.sendcmd("EPSV").split("|||")[1].split("|")[0]))
        # Only the newest is listening; the earlier ones were closed when the
        # next PASV/EPSV replaced them.
        for port in ports[:-1]:
            if port == ports[-1]:
                continue
            try:
                socket.create_connection((server.host, port), timeout=2).close()
                raise AssertionError(f"old passive port {port} still accepts")
            except ConnectionRefusedError:
                pass
        socket.create_connection((server.host, ports[-1]), timeout=2).close()


def test_drop_box_site_takes_uploads_and_refuses_reads(make_server, tmp_path):
    import io

    box = tmp_path / "box"
    box.mkdir()
    (box / "earlier.txt").write_bytes(b"someone else's upload")
    sites = site_toml("main", {"demo": ("demo", "all")}, box).replace(
        f'"/" = "{box}"', f'"/" = {{ path = "{box}", mode = "write-only" }}'
    )
    assert "write-only" in sites
    server = make_server(sites=sites)
    with server.ftp() as ftp:
        assert ftp.storbinary("STOR mine.txt", io.BytesIO(b"my upload")).startswith("226")
        assert ftp.sendcmd("MKD sub").startswith("257")
        assert ftp.storbinary("STOR sub/deep.txt", io.BytesIO(b"deep")).startswith("226")
        for command in ["RETR earlier.txt", "RETR mine.txt", "LIST", "NLST", "MLSD"]:
            try:
                ftp.retrbinary(command, lambda _: None)
                raise AssertionError(f"{command} was allowed on a drop box")
            except ftplib.error_perm as e:
                assert str(e).startswith("550"), f"{command}: {e}"
        for command in ["SIZE earlier.txt", "SIZE mine.txt", "MDTM mine.txt", "MLST mine.txt", "STAT sub"]:
            try:
                reply = ftp.sendcmd(command)
                raise AssertionError(f"{command} answered {reply!r} on a drop box")
            except ftplib.error_perm as e:
                assert str(e).startswith("550"), f"{command}: {e}"
        # The session is fine after all those refusals.
        assert ftp.storbinary("STOR last.txt", io.BytesIO(b"last")).startswith("226")
    assert (box / "mine.txt").read_bytes() == b"my upload"
    assert (box / "sub" / "deep.txt").read_bytes() == b"deep"
    assert (box / "last.txt").read_bytes() == b"last"
    assert (box / "earlier.txt").read_bytes() == b"someone else's upload"


def test_read_only_site_refuses_changes_whatever_the_account_may_do(make_server, tmp_path):
    import io

    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "f.txt").write_bytes(b"public")
    sites = site_toml("main", {"demo": ("demo", "all")}, pub).replace(
        f'"/" = "{pub}"', f'"/" = {{ path = "{pub}", mode = "read-only" }}'
    )
    server = make_server(sites=sites)
    with server.ftp() as ftp:
        data = []
        ftp.retrbinary("RETR f.txt", data.append)
        assert b"".join(data) == b"public"
        assert ftp.nlst() == ["f.txt"]
        for action in [
            lambda: ftp.storbinary("STOR new.txt", io.BytesIO(b"x")),
            lambda: ftp.storbinary("STOR f.txt", io.BytesIO(b"x")),
            lambda: ftp.sendcmd("MKD d"),
            lambda: ftp.sendcmd("DELE f.txt"),
            lambda: ftp.rename("f.txt", "g.txt"),
        ]:
            try:
                action()
                raise AssertionError("a change was allowed on a read-only grant")
            except ftplib.error_perm as e:
                assert str(e)[:3] in ("550", "553"), e
    assert sorted(p.name for p in pub.iterdir()) == ["f.txt"]
    assert (pub / "f.txt").read_bytes() == b"public"


def test_unknown_user_wrong_password_and_disabled_get_the_same_replies(make_server, tmp_path):
    from conftest import password_hash, toml_str

    root = tmp_path / "root"
    root.mkdir()
    sites = site_toml("main", {"demo": ("demo", "all")}, root)
    sites += (
        "[site.main.auth.config.users.off]\n"
        f"password = {toml_str(password_hash('off'))}\n"
        "disabled = true\n"
    )
    server = make_server(sites=sites)
    replies = {}
    for user, password in [("nobody", "x"), ("demo", "wrong"), ("off", "off")]:
        ftp = ftplib.FTP(timeout=20)
        ftp.connect(server.host, server.port)
        user_reply = ftp.sendcmd(f"USER {user}")
        try:
            ftp.sendcmd(f"PASS {password}")
            raise AssertionError(f"{user} logged in")
        except ftplib.error_perm as e:
            # USER echoes the name it was given; nothing else may differ.
            replies[user] = (user_reply.replace(user, "NAME"), str(e))
        ftp.close()
    assert len(set(replies.values())) == 1, replies
    user_reply, pass_reply = replies["nobody"]
    assert user_reply.startswith("331") and pass_reply == "530 Login incorrect", replies
