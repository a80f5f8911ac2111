"""Contract 0.2 end to end, with the real binary: builtin:auth-http against a
small HTTP service started here, per-user storage roots from account
attributes, per-account session limits, builtin:events-webhook and event
plugins that misbehave, outbound requests to hosts that are not allowed, a
plugin built for 0.1.0, and a 200,000-entry directory listed in bounded memory.
"""

import ftplib
import io
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import BINARY, REPO, SERVER_DEFAULTS, password_hash, start_server, toml_str


# ---------------------------------------------------------------- an HTTP service


class Service:
    """A user directory (`POST /auth`) and an event sink (`POST /events`) on
    127.0.0.1, recording every request."""

    def __init__(self):
        self.users = {}  # user -> (password, account JSON)
        self.requests = []  # (path, parsed JSON body)
        self.events = []
        self.lock = threading.Lock()
        self.hang = threading.Event()  # set: /hang never answers in time
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                data = json.loads(body) if body else None
                with service.lock:
                    service.requests.append(
                        (self.path, data, {k.lower(): v for k, v in self.headers.items()}))
                if self.path == "/events":
                    with service.lock:
                        service.events.append(data)
                    return self.answer(204)
                if self.path == "/hang":
                    time.sleep(3)
                    return self.answer(204)
                user = data.get("user")
                if user == "broken":
                    return self.answer(500, {"error": "database down"})
                if user == "slow":
                    time.sleep(3)
                    return self.answer(401)
                if user == "forbidden":
                    return self.answer(403)
                known = service.users.get(user)
                if known is None or known[0] != data.get("password"):
                    return self.answer(401)
                return self.answer(200, known[1])

            def answer(self, status, body=None):
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def hits(self, path):
        with self.lock:
            return sum(1 for p, _, _ in self.requests if p == path)

    def wait_events(self, count, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"expected {count} events, got {self.events}")

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def service():
    s = Service()
    yield s
    s.stop()


def write_config(tmp_path, body, server_extra=""):
    config = tmp_path / "wasmftpd.toml"
    config.write_text(SERVER_DEFAULTS + server_extra + "\n" + body)
    return config


def storage_block(root, extra=""):
    return f"""
[site.main.storage]
plugin = "builtin:storage-fs"
{extra}
[site.main.storage.dirs]
"/" = {toml_str(str(root))}
"""


def auth_http_block(service, cache="0s", allowed=None, timeout="1s"):
    allowed = [service.origin] if allowed is None else allowed
    return f"""
[site.main]
[site.main.auth]
plugin = "builtin:auth-http"
allowed_hosts = [{", ".join(toml_str(a) for a in allowed)}]
[site.main.auth.config]
url = {toml_str(service.origin + "/auth")}
timeout = "{timeout}"
cache = "{cache}"
"""


def login_reply(server, user, password):
    client = ftplib.FTP(timeout=20)
    client.connect(server.host, server.port)
    try:
        client.login(user, password)
        return client, "230"
    except ftplib.all_errors as e:
        client.close()
        return None, str(e)[:3]


def retr(client, path):
    out = io.BytesIO()
    client.retrbinary(f"RETR {path}", out.write)
    return out.getvalue()


# ---------------------------------------------------------------- auth-http


def test_auth_http_users_refusals_errors_and_per_user_roots(service, tmp_path):
    root = tmp_path / "root"
    (root / "bob").mkdir(parents=True)
    (root / "bob" / "b.txt").write_bytes(b"bob's file")
    service.users = {
        "ann": ("ann pw", {"home": "/", "permissions": "all",
                           "limits": {"max_sessions": 1, "quota_bytes": "1GiB"},
                           "attributes": {"root": "ann"}}),
        "bob": ("bob pw", {"home": "/", "permissions": ["read", "list"],
                           "attributes": {"root": "bob"}}),
        "dis": ("dis pw", {"home": "/", "disabled": True, "attributes": {"root": "dis"}}),
        "bad": ("bad pw", {"permissions": "all"}),  # no home: not an account
    }
    config = write_config(
        tmp_path, auth_http_block(service) + storage_block(root, 'config = { root_attribute = "root" }'))
    server = start_server(config)
    try:
        ann, code = login_reply(server, "ann", "ann pw")
        assert code == "230"
        ann.storbinary("STOR mine.txt", io.BytesIO(b"ann's data"))
        assert (root / "ann" / "mine.txt").read_bytes() == b"ann's data", "ann's own root"
        assert ann.nlst() == ["mine.txt"]

        # What the service was sent.
        _, sent, headers = service.requests[0]
        assert sent == {"user": "ann", "password": "ann pw", "client_address": "127.0.0.1",
                        "tls": False, "site": "main"}
        assert headers["content-type"] == "application/json"

        # max_sessions = 1: a second session of ann is refused with 421.
        _, code = login_reply(server, "ann", "ann pw")
        assert code == "421"
        ann.quit()
        again, code = login_reply(server, "ann", "ann pw")
        assert code == "230", "the place was given back at QUIT"
        again.quit()

        bob, code = login_reply(server, "bob", "bob pw")
        assert code == "230"
        assert retr(bob, "b.txt") == b"bob's file"
        assert bob.nlst() == ["b.txt"], "bob sees only his root"
        with pytest.raises(ftplib.error_perm, match="^550"):
            bob.storbinary("STOR x.txt", io.BytesIO(b"no"))
        bob.quit()

        assert login_reply(server, "ann", "wrong")[1] == "530"
        assert login_reply(server, "nobody", "x")[1] == "530"
        assert login_reply(server, "forbidden", "x")[1] == "530"
        assert login_reply(server, "dis", "dis pw")[1] == "530"
        assert login_reply(server, "broken", "x")[1] == "421"
        assert login_reply(server, "bad", "bad pw")[1] == "421"
        started = time.monotonic()
        assert login_reply(server, "slow", "x")[1] == "421"
        assert time.monotonic() - started < 2.5, "the 1s timeout answers, not the service"
        server.wait_for_log(r"POST http://127\.0\.0\.1:\d+/auth answered 500")
    finally:
        server.stop()
    assert "ann pw" not in server.log(), "passwords are never logged"


def test_auth_http_cache_answers_repeat_logins(service, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    service.users = {"ann": ("ann pw", {"home": "/"})}
    config = write_config(tmp_path, auth_http_block(service, cache="30s") + storage_block(root))
    server = start_server(config)
    try:
        for _ in range(3):
            client, code = login_reply(server, "ann", "ann pw")
            assert code == "230"
            client.quit()
        assert service.hits("/auth") == 1, "good answers are cached"
        for _ in range(2):
            assert login_reply(server, "ann", "guess")[1] == "530"
        assert service.hits("/auth") == 2, "bad-credential answers are cached too"
        # A different password is a different key: the service decides.
        service.users = {"ann": ("new pw", {"home": "/"})}
        client, code = login_reply(server, "ann", "new pw")
        assert code == "230"
        client.quit()
        assert service.hits("/auth") == 3
    finally:
        server.stop()


def test_account_bandwidth_limits_from_auth_http_apply(service, tmp_path):
    """The account's own limits (from the user directory) slow its transfers;
    another account on the same site is not limited. Only lower bounds on
    time are asserted: a loaded machine can only make transfers slower."""
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(1_500_000)
    (root / "big.bin").write_bytes(data)
    service.users = {
        "limited": ("pw", {"home": "/", "limits": {"download_bytes_per_second": 500_000,
                                                 "upload_bytes_per_second": 500_000}}),
        "free": ("pw", {"home": "/"}),
    }
    server = start_server(write_config(tmp_path, auth_http_block(service) + storage_block(root)))
    try:
        slow, code = login_reply(server, "limited", "pw")
        assert code == "230"
        started = time.monotonic()
        assert retr(slow, "big.bin") == data
        took = time.monotonic() - started
        assert took >= 2.5, f"1.5 MB at 500 kB/s took {took:.2f} s"
        started = time.monotonic()
        slow.storbinary("STOR up.bin", io.BytesIO(data))
        took = time.monotonic() - started
        assert took >= 2.5, f"1.5 MB up at 500 kB/s took {took:.2f} s"
        assert (root / "up.bin").read_bytes() == data
        slow.quit()
        fast, code = login_reply(server, "free", "pw")
        assert code == "230"
        assert retr(fast, "big.bin") == data
        fast.quit()
    finally:
        server.stop()


def test_a_host_that_is_not_allowed_is_denied_and_logged(service, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    service.users = {"ann": ("ann pw", {"home": "/"})}
    config = write_config(
        tmp_path, auth_http_block(service, allowed=["http://127.0.0.1:9"]) + storage_block(root))
    server = start_server(config)
    try:
        assert login_reply(server, "ann", "ann pw")[1] == "421"
        line = server.wait_for_log("outbound request denied")
        assert f"127.0.0.1:{service.port}" in line and "auth-http" in line, line
        assert service.hits("/auth") == 0, "nothing left the server"
    finally:
        server.stop()


# ---------------------------------------------------------------- events


def events_site(tmp_path, root, events_toml):
    return f"""
[site.main]
[site.main.auth]
plugin = "builtin:auth-static"
[site.main.auth.config.users.demo]
password = {toml_str(password_hash("demo"))}
{storage_block(root)}
{events_toml}
"""


def test_webhook_receives_events_with_sizes(service, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    hook = f"""
[[site.main.events]]
plugin = "builtin:events-webhook"
allowed_hosts = [{toml_str(service.origin)}]
config = {{ url = {toml_str(service.origin + "/events")} }}
"""
    server = start_server(write_config(tmp_path, events_site(tmp_path, root, hook)))
    try:
        client = server.ftp("demo", "demo")
        data = os.urandom(300_000)
        client.storbinary("STOR up.bin", io.BytesIO(data))
        assert retr(client, "up.bin") == data
        client.mkd("d")
        client.rename("up.bin", "d/moved.bin")
        client.delete("d/moved.bin")
        client.rmd("d")
        with pytest.raises(ftplib.error_perm):
            client.delete("missing")
        client.quit()
        events = service.wait_events(9)
    finally:
        server.stop()
    by_kind = {}
    for e in events:
        by_kind.setdefault(e["event"], []).append(e)
        assert set(e) == {"event", "site", "user", "client_address", "path", "target", "size",
                          "duration_ms", "ok", "time"}, e
        assert (e["site"], e["user"], e["client_address"]) == ("main", "demo", "127.0.0.1")
        assert e["time"].endswith("Z")
    assert [e["event"] for e in events] == [
        "login", "upload", "download", "mkdir", "rename", "delete", "rmdir", "delete", "logout"]
    upload, download = by_kind["upload"][0], by_kind["download"][0]
    assert (upload["path"], upload["size"], upload["ok"]) == ("/up.bin", 300_000, True)
    assert (download["path"], download["size"], download["ok"]) == ("/up.bin", 300_000, True)
    assert upload["duration_ms"] is not None and upload["duration_ms"] >= 0
    rename = by_kind["rename"][0]
    assert (rename["path"], rename["target"]) == ("/up.bin", "/d/moved.bin")
    assert [d["ok"] for d in by_kind["delete"]] == [True, False]
    assert by_kind["login"][0]["path"] is None


def built_test_plugin(name):
    """A test plugin built by host/build.rs (the newest build)."""
    found = sorted(REPO.glob(f"target/debug/build/wasmftpd-*/out/plugins-target/wasm32-wasip2/release/{name}"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail(f"{name} is missing: run `cargo build` first")
    return found[-1]


@pytest.mark.parametrize("behave", ["trap", "sleep"])
def test_an_event_plugin_that_traps_or_hangs_leaves_transfers_alone(service, tmp_path, behave):
    root = tmp_path / "root"
    root.mkdir()
    handlers = f"""
[[site.main.events]]
plugin = {toml_str(str(built_test_plugin("test_limits.wasm")))}
call_timeout = "400ms"
queue = 4
config = {{ behave = "{behave}" }}
[[site.main.events]]
plugin = "builtin:events-webhook"
allowed_hosts = [{toml_str(service.origin)}]
config = {{ url = {toml_str(service.origin + "/events")} }}
"""
    server = start_server(write_config(tmp_path, events_site(tmp_path, root, handlers)))
    try:
        client = server.ftp("demo", "demo")
        started = time.monotonic()
        for i in range(20):
            data = os.urandom(1000 + i)
            client.storbinary(f"STOR f{i}", io.BytesIO(data))
            assert retr(client, f"f{i}") == data
        elapsed = time.monotonic() - started
        client.quit()
        # 42 events each costing the broken handler up to 400 ms would take
        # 16 s if anyone waited for it.
        assert elapsed < 8, f"transfers took {elapsed:.1f} s"
        # The healthy handler beside it got every event.
        events = service.wait_events(42)
        assert sum(e["event"] == "upload" for e in events) == 20
        server.wait_for_log("event not delivered")
        if behave == "sleep":
            server.wait_for_log("event queue full")
    finally:
        server.stop()


def kit_test(*args):
    return subprocess.run([str(BINARY), "plugin", "test", *args], capture_output=True,
                          text=True, timeout=120)


def test_kit_event_battery_against_the_webhook(service):
    run = kit_test("--events", "builtin:events-webhook", "--allow-host", service.origin,
                   "--config", f"url={service.origin}/events")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.rstrip().endswith("15 passed, 0 failed"), run.stdout
    # Nine kinds, five odd events, a run of 100: all reached the service.
    events = service.wait_events(114)
    assert {e["event"] for e in events} == {
        "login", "login-failed", "logout", "upload", "download", "delete", "rename", "mkdir", "rmdir"}
    assert any(e["client_address"] == "2001:db8::1" for e in events)


def test_kit_event_battery_fails_a_trapping_or_denied_plugin(service):
    run = kit_test("--events", str(built_test_plugin("test_limits.wasm")), "--config", "behave=trap")
    assert run.returncode == 1, run.stdout
    assert "FAIL event `login` is handled: " in run.stdout and "trapped" in run.stdout, run.stdout
    # Without --allow-host the webhook's requests are denied, and the check says so.
    run = kit_test("--events", "builtin:events-webhook", "--config", f"url={service.origin}/events",
                   "--config", "budget=300ms")
    assert run.returncode == 1, run.stdout
    assert "not in this plugin's allowed_hosts" in run.stdout, run.stdout
    assert service.hits("/events") == 0


def test_webhook_does_not_retry_a_request_the_host_refused(service):
    """A refused origin is final: one attempt per event, where a 5xx gets up
    to four. Counted in the host's log, one `outbound request denied` line per
    attempt, so no timing is involved."""
    run = subprocess.run(
        [str(BINARY), "plugin", "test", "--events", "builtin:events-webhook",
         "--config", f"url={service.origin}/events", "--config", "retries=3", "--config", "budget=4s"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, RUST_LOG="warn"))
    assert run.returncode == 1, run.stdout
    failures = [line for line in run.stdout.splitlines() if line.startswith("FAIL")]
    # Nine kinds, five odd events, and the run of 100 stops at its first failure.
    assert len(failures) == 15, run.stdout
    assert all("not in this plugin's allowed_hosts (not retried)" in line for line in failures), failures
    assert run.stderr.count("outbound request denied") == 15, run.stderr
    assert service.hits("/events") == 0


# ---------------------------------------------------------------- 0.1.0 plugins


def test_plugins_built_for_0_1_0_still_serve(tmp_path):
    fixtures = REPO / "host" / "tests" / "fixtures" / "plugin-0.1.0"
    root = tmp_path / "root"
    root.mkdir()
    (root / "old.txt").write_bytes(b"served by a 0.1.0 plugin")
    body = f"""
[site.main]
[site.main.auth]
plugin = {toml_str(str(fixtures / "auth_static.wasm"))}
[site.main.auth.config.users.demo]
password = {toml_str(password_hash("demo"))}
[site.main.storage]
plugin = {toml_str(str(fixtures / "storage_fs.wasm"))}
[site.main.storage.dirs]
"/" = {toml_str(str(root))}
"""
    server = start_server(write_config(tmp_path, body))
    try:
        client = server.ftp("demo", "demo")
        assert retr(client, "old.txt") == b"served by a 0.1.0 plugin"
        client.storbinary("STOR new.txt", io.BytesIO(b"written"))
        assert (root / "new.txt").read_bytes() == b"written"
        assert sorted(client.nlst()) == ["new.txt", "old.txt"]
        facts = dict(client.mlsd())
        assert facts["old.txt"]["size"] == str(len(b"served by a 0.1.0 plugin"))
        client.quit()
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("demo", "wrong")
    finally:
        server.stop()


# ---------------------------------------------------------------- large listings


def rss_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_200000_entry_directory_is_listed_in_bounded_memory(make_server):
    server = make_server()
    big = server.root / "big"
    big.mkdir()
    count = 200_000
    for i in range(count):
        os.close(os.open(big / f"file-{i:06d}.dat", os.O_CREAT | os.O_WRONLY, 0o644))
    pid = server.proc.pid
    client = server.ftp("demo", "demo")
    client.voidcmd("TYPE I")
    client.nlst()  # warm up: plugin instance, first data connection
    for command in ("LIST big", "MLSD big"):
        before = rss_kib(pid, "VmRSS")
        # Reset the peak so VmHWM is the peak of this listing alone.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        lines = [0]
        seen = set()

        def line(text):
            lines[0] += 1
            if len(seen) < 10:
                seen.add(text.rsplit(" ", 1)[-1])

        client.retrlines(command, line)
        peak = rss_kib(pid, "VmHWM")
        assert lines[0] == count, (command, lines[0])
        growth_mib = (peak - before) / 1024
        print(f"{command}: {count} entries, server RSS {before // 1024} MiB -> peak {peak // 1024} MiB")
        assert growth_mib < 64, f"{command}: RSS grew by {growth_mib:.1f} MiB"
        assert all(name.startswith("file-") for name in seen)
    client.quit()
