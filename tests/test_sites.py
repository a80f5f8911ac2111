"""Virtual sites and hot reload, end to end: HOST / user@site / dedicated
listener selection, and a config directory changed while the server runs."""

import ftplib
import io
import os
import re
import signal
import threading
import time

import pytest

from conftest import password_hash, start_server, toml_str


def site_file(users, root, extra=""):
    """The body of a site file (the site's keys at top level)."""
    out = [extra, "[auth]", 'plugin = "builtin:auth-static"']
    for user, password in users.items():
        out += [f"[auth.config.users.{user}]", f"password = {toml_str(password_hash(password))}"]
    out += ["[storage]", 'plugin = "builtin:storage-fs"', "[storage.dirs]", f'"/" = {toml_str(str(root))}']
    return "\n".join(out) + "\n"


SERVER = """[server]
listen = ["127.0.0.1:0"]
passive_ports = "45000-45999"
login_failure_delay = "0s"
"""


@pytest.fixture
def sites_dir(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    roots = {}
    for name in ("alpha", "beta", "gamma"):
        roots[name] = tmp_path / f"{name}-root"
        roots[name].mkdir()
        (roots[name] / f"{name}.txt").write_text(f"this is {name}\n")
    (conf / "server.toml").write_text(SERVER + 'default_site = "alpha"\n')
    (conf / "alpha.toml").write_text(
        site_file({"alice": "pw-a"}, roots["alpha"], 'host_names = ["alpha.test"]\nallow_user_at_site = true')
    )
    (conf / "beta.toml").write_text(
        site_file({"bob": "pw-b"}, roots["beta"], 'host_names = ["beta.test", "b.test"]\nallow_user_at_site = true')
    )
    (conf / "gamma.toml").write_text(site_file({"gina": "pw-g"}, roots["gamma"], 'listen = ["127.0.0.1:0"]'))
    return conf, roots


@pytest.fixture
def dir_server(sites_dir):
    conf, roots = sites_dir
    server = start_server(conf, expect_listeners=2)
    server.roots = roots
    yield server
    server.stop()


def port_of(server, site):
    for line in server.log_lines:
        m = re.search(r"listening on \S+:(\d+) \(site " + site + r"\)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no dedicated listener for {site}:\n{server.log()}")


def general_port(server):
    for line in server.log_lines:
        m = re.search(r"listening on \S+:(\d+)$", line)
        if m:
            return int(m.group(1))
    raise AssertionError(server.log())


def read(client, path):
    buf = io.BytesIO()
    client.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def connect(server, port=None):
    client = ftplib.FTP(timeout=20)
    client.connect("127.0.0.1", port or general_port(server))
    return client


def test_host_selects_the_site(dir_server):
    client = connect(dir_server)
    assert client.sendcmd("HOST beta.test").startswith("220")
    client.login("bob", "pw-b")
    assert read(client, "beta.txt") == b"this is beta\n"
    client.quit()

    # Alpha's user does not exist on beta.
    client = connect(dir_server)
    client.sendcmd("HOST b.test")
    with pytest.raises(ftplib.error_perm, match="^530"):
        client.login("alice", "pw-a")


def test_unknown_host_and_host_after_login(dir_server):
    client = connect(dir_server)
    with pytest.raises(ftplib.error_perm, match="^504"):
        client.sendcmd("HOST nowhere.test")
    client.login("alice", "pw-a")  # the default site
    assert read(client, "alpha.txt") == b"this is alpha\n"
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("HOST beta.test")
    assert "HOST" in client.sendcmd("FEAT")


def test_user_at_site_selects_the_site(dir_server):
    client = connect(dir_server)
    client.login("bob@beta", "pw-b")
    assert read(client, "beta.txt") == b"this is beta\n"


def test_dedicated_listener_serves_its_site(dir_server):
    client = connect(dir_server, port_of(dir_server, "gamma"))
    client.login("gina", "pw-g")
    assert read(client, "gamma.txt") == b"this is gamma\n"
    # gamma does not allow user@site, and it has no host name but its own.
    other = connect(dir_server)
    with pytest.raises(ftplib.error_perm):
        other.login("gina@gamma", "pw-g")


def wait_reload(server, count_before, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [l for l in server.log_lines if "reload (" in l]
        if len(lines) > count_before:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError("no reload logged:\n" + server.log())


def reloads(server):
    return len([l for l in server.log_lines if "reload (" in l])


def test_added_site_is_served_after_a_file_drop(dir_server, sites_dir, tmp_path):
    conf, _ = sites_dir
    root = tmp_path / "delta-root"
    root.mkdir()
    (root / "delta.txt").write_text("new site\n")
    before = reloads(dir_server)
    started = time.monotonic()
    (conf / "delta.toml").write_text(site_file({"dan": "pw-d"}, root, 'host_names = ["delta.test"]'))
    line = wait_reload(dir_server, before)
    assert "added [\"delta\"]" in line, line
    client = connect(dir_server)
    client.sendcmd("HOST delta.test")
    client.login("dan", "pw-d")
    assert read(client, "delta.txt") == b"new site\n"
    # Picked up within a second (debounced watch) — generous bound for a loaded CI machine.
    assert time.monotonic() - started < 5


def test_edited_site_keeps_running_sessions(dir_server, sites_dir):
    conf, roots = sites_dir
    old = connect(dir_server)
    old.login("alice", "pw-a")
    before = reloads(dir_server)
    (conf / "alpha.toml").write_text(
        site_file({"alice": "pw-a", "amy": "pw-amy"}, roots["alpha"], 'host_names = ["alpha.test"]')
    )
    assert "changed [\"alpha\"]" in wait_reload(dir_server, before)
    new = connect(dir_server)
    new.login("amy", "pw-amy")
    assert read(new, "alpha.txt") == b"this is alpha\n"
    # The session that logged in before the reload still works.
    assert read(old, "alpha.txt") == b"this is alpha\n"
    old.storbinary("STOR from-old.txt", io.BytesIO(b"still here"))
    assert (roots["alpha"] / "from-old.txt").read_bytes() == b"still here"


def test_removed_site_refuses_new_sessions_but_finishes_transfers(dir_server, sites_dir):
    conf, roots = sites_dir
    data = os.urandom(32 * 1024 * 1024)
    (roots["beta"] / "big.bin").write_bytes(data)
    client = connect(dir_server)
    client.sendcmd("HOST beta.test")
    client.login("bob", "pw-b")
    client.voidcmd("TYPE I")
    conn = client.transfercmd("RETR big.bin")
    got = bytearray(conn.recv(1 << 16))
    before = reloads(dir_server)
    (conf / "beta.toml").unlink()
    assert "removed [\"beta\"]" in wait_reload(dir_server, before)
    while chunk := conn.recv(1 << 20):
        got += chunk
    conn.close()
    assert client.voidresp().startswith("226")
    assert bytes(got) == data
    other = connect(dir_server)
    with pytest.raises(ftplib.error_perm, match="^504"):
        other.sendcmd("HOST beta.test")


def test_broken_site_file_keeps_the_old_config(dir_server, sites_dir, tmp_path):
    conf, roots = sites_dir
    cases = {
        "bad toml": "[auth\nplugin = ",
        "unknown key": site_file({"x": "y"}, roots["alpha"], "colour = 'blue'"),
        "missing plugin": site_file({"x": "y"}, roots["alpha"]).replace("builtin:auth-static", "no-such.wasm"),
        "not a component": None,
    }
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0 definitely not a component")
    cases["not a component"] = site_file({"x": "y"}, roots["alpha"]).replace(
        '"builtin:auth-static"', toml_str(str(junk))
    )
    for what, text in cases.items():
        before = len([l for l in dir_server.log_lines if "reload" in l and "failed" in l])
        (conf / "broken.toml").write_text(text)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            failed = [l for l in dir_server.log_lines if "reload" in l and "failed" in l]
            if len(failed) > before:
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"{what}: no failed reload logged:\n{dir_server.log()}")
        assert "broken.toml" in failed[-1], (what, failed[-1])
        # The old configuration keeps serving.
        client = connect(dir_server)
        client.login("alice", "pw-a")
        assert read(client, "alpha.txt") == b"this is alpha\n"
        client.quit()
        (conf / "broken.toml").unlink()
        time.sleep(0.3)


def test_reload_under_load(dir_server, sites_dir):
    conf, roots = sites_dir
    stop = time.monotonic() + 8
    errors = []

    def worker(n):
        try:
            client = connect(dir_server)
            client.login("alice", "pw-a")
            i = 0
            while time.monotonic() < stop:
                data = os.urandom(50_000 + n * 1000 + i)
                client.storbinary(f"STOR w{n}-{i}.bin", io.BytesIO(data))
                assert read(client, f"w{n}-{i}.bin") == data
                names = client.nlst()
                assert f"w{n}-{i}.bin" in names
                i += 1
            client.quit()
        except Exception as e:  # noqa: BLE001 - any failure fails the test
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    reloads_sent = 0
    while time.monotonic() < stop and reloads_sent < 100:
        dir_server.proc.send_signal(signal.SIGHUP)
        reloads_sent += 1
        if reloads_sent % 10 == 0:
            # Change a site too, not only re-read the same files.
            (conf / "beta.toml").write_text(
                site_file({"bob": "pw-b", f"u{reloads_sent}": "pw"}, roots["beta"], 'host_names = ["beta.test"]')
            )
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=60)
    assert not errors, (errors, dir_server.log()[-5000:])
    assert reloads_sent >= 50


def reloads(server):
    return len([l for l in server.log_lines if "reload (" in l])


def test_a_site_moved_in_its_file_is_not_changed(dir_server, sites_dir):
    conf, _ = sites_dir
    before = reloads(dir_server)
    beta = conf / "beta.toml"
    beta.write_text("# a comment moves the site down\n\n" + beta.read_text())
    assert "no site changed" in wait_reload(dir_server, before)


def test_session_limit_holds_across_a_reload_that_changes_the_site(dir_server, sites_dir):
    conf, roots = sites_dir
    alpha = conf / "alpha.toml"
    body = site_file({"alice": "pw-a"}, roots["alpha"], 'host_names = ["alpha.test"]\nmax_connections = 1')
    before = reloads(dir_server)
    alpha.write_text(body)
    assert "alpha" in wait_reload(dir_server, before)
    first = connect(dir_server)
    first.login("alice", "pw-a")

    # An edit to the site builds a new version of it; the session above still counts.
    before = reloads(dir_server)
    alpha.write_text('banner = "alpha, edited"\n' + body)
    assert re.search(r'changed \["alpha"\]', wait_reload(dir_server, before))
    second = connect(dir_server)
    assert "alpha, edited" in second.getwelcome()
    with pytest.raises(ftplib.error_temp, match="^421"):
        second.login("alice", "pw-a")

    # Once the first session is gone, its place is free on the new version.
    first.quit()
    deadline = time.monotonic() + 5
    while True:
        third = connect(dir_server)
        try:
            third.login("alice", "pw-a")
            break
        except ftplib.error_temp:
            assert time.monotonic() < deadline, "the place was never given back"
            time.sleep(0.05)
    third.quit()
