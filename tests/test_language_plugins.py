"""Plugins in every language we ship, held to the contract.

- The conformance kit (`wasmftpd plugin test`) runs its storage battery against
  every shipped storage plugin (Rust storage-fs, C storage-dir, Python
  storage-quota) and its auth battery against every auth plugin (Rust
  auth-static, Python auth-passwd, JavaScript auth-rules, C auth-htpasswd). A
  plugin that breaks the contract fails here.
- The kit itself fails a plugin that misbehaves.
- End to end: a site served by the Python auth plugin and the C storage plugin,
  and one by the JavaScript auth plugin and the quota-limited Python storage,
  driven by ftplib; per-user roots and quotas from the account (contract 0.2).
  Password-file edits count at the next login (Python auth-passwd, C
  auth-htpasswd).
- Outbound HTTP from every language, each against a service started here on
  loopback and each denied (with an error naming the host) without the grant:
  Python auth-passwd's `attributes_url`, JavaScript auth-rules' `blocklist_url`
  (fetch), the C event plugin notify (wasi:http bindings).

The example plugins are built by `examples/plugins/build.sh` once per session
(skipped when their sources are unchanged). Compiled components are cached in
the e2e cache shared with the servers, so only the first run pays for compiling
the large Python and JavaScript components.
"""

import ftplib
import io
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from conftest import BINARY, CACHE, REPO, SERVER_DEFAULTS, password_hash, start_server, toml_str

EXAMPLES = REPO / "target" / "example-plugins"


@pytest.fixture(scope="session")
def plugins():
    """The directory holding the built example plugins."""
    subprocess.run(
        ["bash", str(REPO / "examples" / "plugins" / "build.sh"), str(EXAMPLES)],
        check=True,
        timeout=1800,
    )
    return EXAMPLES


def kit(*args, command="test", timeout=900):
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(CACHE)
    env.setdefault("RUST_LOG", "warn")
    return subprocess.run(
        [str(BINARY), "plugin", command, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def summary(proc):
    lines = proc.stdout.strip().splitlines()
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1]) if lines else None
    assert m, f"no summary line:\n{proc.stdout}\n{proc.stderr}"
    return int(m.group(1)), int(m.group(2))


def assert_all_pass(proc):
    passed, failed = summary(proc)
    failures = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("FAIL"))
    assert failed == 0 and proc.returncode == 0, f"{failures}\n{proc.stderr[-3000:]}"
    return passed


def sha_crypt(password, scheme):
    """A `$6$` or `$5$` hash made by openssl, as an administrator would."""
    flag = {"sha512": "-6", "sha256": "-5"}[scheme]
    out = subprocess.run(["openssl", "passwd", flag, "-stdin"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def bcrypt_hash(password):
    """A `$2y$` bcrypt hash of cost 5, as `htpasswd -B` writes it, or None when
    nothing here makes one: Python's bcrypt, htpasswd, or the C library's crypt
    (libxcrypt) through the `crypt` module of Python < 3.13. `$2b$` and `$2y$`
    are the same hash."""
    try:
        import bcrypt
        made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    except ImportError:
        if shutil.which("htpasswd"):
            out = subprocess.run(["htpasswd", "-nbB", "-C", "5", "u", password],
                                 capture_output=True, text=True, check=True)
            return out.stdout.strip().split(":", 1)[1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
            made = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        except (ImportError, AttributeError, ValueError):
            return None
    return "$2y$" + made[4:] if made and made.startswith(("$2b$", "$2y$")) else None


# ---- storage: the battery for every shipped storage plugin -------------------

STORAGE = {
    "rust-storage-fs": ["builtin:storage-fs"],
    "rust-storage-fs-chunks": ["builtin:storage-fs", "--config", "data_path=chunks"],
    "c-storage-dir": ["storage-dir.wasm"],
    "python-storage-quota": ["storage-quota.wasm"],
    "python-storage-quota-limited": ["storage-quota.wasm", "--config", "quota=64MiB"],
}


def plugin_path(plugins, name):
    return name if name.startswith("builtin:") else plugins / name


@pytest.mark.parametrize("case", STORAGE.values(), ids=STORAGE.keys())
def test_storage_plugin_passes_the_battery(plugins, case):
    name, *extra = case
    passed = assert_all_pass(kit("--storage", plugin_path(plugins, name), *extra))
    assert passed >= 45


def test_storage_battery_under_a_subdirectory_root(plugins, tmp_path):
    """`root` config: the plugin serves one granted directory among others."""
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    for name in ["storage-dir.wasm", "storage-quota.wasm"]:
        proc = kit("--storage", plugins / name, "--dir", f"/srv={tmp_path / 'data'}",
                   "--dir", f"/other={tmp_path / 'other'}", "--config", "root=/srv")
        assert_all_pass(proc)
    assert list((tmp_path / "other").iterdir()) == []


# ---- auth: the battery for every shipped auth plugin ---------------------------

def test_rust_auth_static_passes(plugins):
    proc = kit(
        "--auth", "builtin:auth-static",
        "--config", f"users.alice.password={password_hash('alice pw')}",
        "--config", "users.alice.home=/alice",
        "--config", f"users.bob.password={password_hash('bob')}",
        "--config", "users.bob.disabled=true",
        "--config", "anonymous=true",
        "--expect", "alice:alice pw=ok",
        "--expect", "alice:bob=refused",
        "--expect", "bob:bob=disabled",
        "--expect", "anonymous:guest@example.org=open",
    )
    assert_all_pass(proc)


def test_python_auth_passwd_passes(plugins, tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "passwd").write_text(
        "# wasmftpd users\n"
        f"alice:{sha_crypt('alice pw', 'sha512')}\n"
        # A line copied from /etc/shadow keeps its other fields.
        f"bob:{sha_crypt('b:o=b', 'sha256')}:19000:0:99999:7:::\n"
        f"carol:!{sha_crypt('carol', 'sha512')}\n"
    )
    proc = kit(
        "--auth", plugins / "auth-passwd.wasm",
        "--dir", f"/={users}",
        "--config", "home=/home/{user}",
        "--config", "permissions=read,list",
        "--expect", "alice:alice pw=ok",
        "--expect", "bob:b:o=b=ok",
        "--expect", "carol:carol=disabled",
        "--expect", "dave:dave=refused",
    )
    assert_all_pass(proc)
    assert "home /home/alice" in proc.stdout


def test_python_auth_passwd_without_its_file_is_unavailable(plugins, tmp_path):
    proc = kit("--auth", plugins / "auth-passwd.wasm", "--dir", f"/={tmp_path}",
               "--expect", "alice:pw=unavailable")
    # Every login is unavailable then (421), unknown users included.
    assert "ok   login alice -> unavailable" in proc.stdout
    assert "FAIL unknown user -> refused: got unavailable" in proc.stdout


def test_javascript_auth_rules_passes(plugins):
    proc = kit(
        "--auth", plugins / "auth-rules.wasm",
        "--config", f"users.dan.password={sha_crypt('dan pw', 'sha256')}",
        "--config", "users.dan.allow=127.0.0.0/8,::1",
        "--config", "users.dan.permissions=read-only",
        "--config", f"users.eve.password={sha_crypt('eve', 'sha256')}",
        "--config", "users.eve.require_tls=true",
        "--config", "users.eve.home=/eve",
        "--expect", "dan:dan pw=ok",
        "--expect", "dan:dan pw=ok@::1",
        "--expect", "dan:dan pw=disabled@192.0.2.7",
        "--expect", "dan:wrong=refused@192.0.2.7",
        "--expect", "eve:eve=disabled",
    )
    assert_all_pass(proc)
    proc = kit(
        "--auth", plugins / "auth-rules.wasm", "--tls",
        "--config", f"users.eve.password={sha_crypt('eve', 'sha256')}",
        "--config", "users.eve.require_tls=true",
        "--expect", "eve:eve=ok",
    )
    assert_all_pass(proc)


def test_c_auth_htpasswd_passes(plugins, tmp_path):
    """auth-htpasswd (C) hands every hash to the host: SHA-crypt from openssl,
    bcrypt `$2y$` as `htpasswd -B` writes it, argon2id from `wasmftpd
    hash-password`."""
    users = tmp_path / "users"
    users.mkdir()
    carl = bcrypt_hash("carl pw")
    bcrypt_line = f"carl:{carl}\n" if carl else ""
    (users / "htpasswd").write_text(
        "# wasmftpd users\n\n"
        f"alice:{sha_crypt('alice pw', 'sha512')}\n"
        # A line copied from /etc/shadow keeps its other fields.
        f"bob:{sha_crypt('b:o=b', 'sha256')}:19000:0:99999:7:::\r\n"
        + bcrypt_line +
        f"dora:{password_hash('dora pw')}\n"
        f"eve:!{sha_crypt('eve', 'sha512')}\n"
        "fred:*\n"
        # Only the first line of a name counts.
        f"alice:{sha_crypt('other pw', 'sha512')}\n"
    )
    expect = ["alice:alice pw=ok", "bob:b:o=b=ok", "dora:dora pw=ok", "eve:eve=disabled",
              "fred:fred=disabled", "alice:other pw=refused", "zed:zed=refused"]
    if bcrypt_line:
        expect.append("carl:carl pw=ok")
    proc = kit("--auth", plugins / "auth-htpasswd.wasm", "--dir", f"/={users}",
               "--config", "home=/home/{user}", "--config", "permissions=read-only",
               *(arg for e in expect for arg in ("--expect", e)))
    passed = assert_all_pass(proc)
    assert passed == 4 * (3 + bool(bcrypt_line)) + 4 + 4
    assert "ok   login alice -> ok (home /home/alice, Permissions(READ | LIST))" in proc.stdout
    if bcrypt_line:
        assert "ok   login carl -> ok (home /home/carl," in proc.stdout

    # Defaults: home `/`, every permission, the file at /htpasswd.
    proc = kit("--auth", plugins / "auth-htpasswd.wasm", "--dir", f"/={users}",
               "--expect", "alice:alice pw=ok")
    assert_all_pass(proc)
    assert "home /, Permissions(READ | WRITE | APPEND | DELETE | RENAME | MAKE_DIR | REMOVE_DIR | LIST | SET_TIME)" \
        in proc.stdout


def test_c_auth_htpasswd_is_unavailable_without_a_usable_store(plugins, tmp_path):
    """No file, a hash the host cannot check, a bad config: every one is
    `unavailable` (421), with the reason in the server log and never a hash."""
    proc = kit("--auth", plugins / "auth-htpasswd.wasm", "--dir", f"/={tmp_path}",
               "--config", "file=/users/htpasswd", "--expect", "alice:pw=unavailable")
    assert "ok   login alice -> unavailable" in proc.stdout
    assert "FAIL unknown user -> refused: got unavailable (user store unavailable; see the server log)" \
        in proc.stdout
    assert "auth-htpasswd: cannot read the password file /users/htpasswd: No such file or directory" \
        in proc.stderr

    (tmp_path / "htpasswd").write_text("gina:$6$rounds=lots$salt$hash\nhank:plaintext\n")
    proc = kit("--auth", plugins / "auth-htpasswd.wasm", "--dir", f"/={tmp_path}",
               "--expect", "gina:x=unavailable", "--expect", "hank:plaintext=unavailable")
    assert_all_pass(proc)
    assert "the hash of gina is malformed: invalid rounds= in SHA-crypt hash" in proc.stderr
    assert "the hash of hank is not a format the host knows" in proc.stderr
    assert "plaintext" not in proc.stderr and "salt" not in proc.stderr

    proc = kit("--auth", plugins / "auth-htpasswd.wasm", "--dir", f"/={tmp_path}",
               "--config", "permissions=everything", "--expect", "gina:x=unavailable")
    assert "ok   login gina -> unavailable" in proc.stdout
    assert 'config key permissions: "everything" is neither all nor read-only' in proc.stderr


# ---- the kit catches plugins that break the contract ---------------------------

def test_kit_fails_a_storage_plugin_that_refuses_writes(plugins):
    proc = kit("--storage", plugins / "storage-quota.wasm", "--config", "readonly=true")
    passed, failed = summary(proc)
    assert failed > 10 and proc.returncode == 1
    assert "FAIL write+read: small file: open-write" in proc.stdout
    assert "permission-denied" in proc.stdout


def test_kit_reports_no_space_from_a_small_quota(plugins):
    proc = kit("--storage", plugins / "storage-quota.wasm", "--config", "quota=1MiB")
    _, failed = summary(proc)
    assert failed >= 1 and proc.returncode == 1
    assert re.search(r"FAIL write\+read: 5 MiB.*no-space", proc.stdout)


def test_kit_fails_an_auth_plugin_that_accepts_a_wrong_password(plugins):
    # Everyone is anonymous here, so `ok` (which checks a wrong password is
    # refused) must fail.
    proc = kit("--auth", "builtin:auth-static", "--config", "anonymous=true",
               "--expect", "anonymous:x=ok")
    _, failed = summary(proc)
    assert failed == 2 and proc.returncode == 1


def test_kit_refuses_a_plugin_of_the_other_world(plugins):
    proc = kit("--storage", plugins / "auth-rules.wasm")
    assert proc.returncode == 1
    assert "not a storage plugin" in proc.stderr


# ---- inspect ------------------------------------------------------------------

def test_inspect_shows_world_version_and_imports(plugins):
    proc = kit(plugins / "storage-dir.wasm", command="inspect")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "world:    storage-plugin (exports wasmftpd:plugin/storage@0.2.0)" in out
    assert "contract: wasmftpd:plugin 0.2.0" in out
    assert re.search(r"wasi:filesystem/preopens@0\.2\.\d+ +lists the directories", out)
    assert "wasi:config/store@0.2.0-rc.1" in out
    assert "wasi:sockets" not in out
    assert "contract: wasmftpd:plugin 0.2.0 (this server speaks it)" in out

    # An auth plugin that calls the host's password check and reaches the
    # network through wasi:http loads: inspect must say so, not refuse it.
    out = kit(plugins / "auth-passwd.wasm", command="inspect").stdout
    assert "world:    auth-plugin (exports wasmftpd:plugin/auth@0.2.0)" in out
    assert "(this server speaks it)" in out
    assert re.search(r"wasmftpd:plugin/password@0\.2\.0 +checks a password", out)
    assert re.search(r"wasi:http/outgoing-handler@0\.2\.\d+ +outbound HTTP: only to the origins", out)
    assert "will not load" not in out
    events = kit(plugins / "notify.wasm", command="inspect")
    assert "world:    event-plugin (exports wasmftpd:plugin/events@0.2.0)" in events.stdout


def test_inspect_refuses_a_core_module(tmp_path):
    core = tmp_path / "core.wasm"
    core.write_bytes(b"\0asm\x01\0\0\0")
    proc = kit(core, command="inspect")
    assert proc.returncode == 1 and "core WebAssembly module" in proc.stderr


# ---- end to end: sites served by plugins in other languages ---------------------

def payload(size, seed):
    out = bytearray()
    x = seed
    while len(out) < size:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out += x.to_bytes(8, "little")
    return bytes(out[:size])


def retr(client, path):
    buf = io.BytesIO()
    client.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def site_config(tmp_path, auth, storage, auth_keys=""):
    """A server config with one site `langs`; auth/storage: (plugin, config, dirs);
    auth_keys: more lines for the auth section."""
    out = [SERVER_DEFAULTS, "[site.langs]"]
    for section, (plugin, config, dirs) in (("auth", auth), ("storage", storage)):
        out.append(f"[site.langs.{section}]")
        out.append(f"plugin = {toml_str(str(plugin))}")
        if section == "auth" and auth_keys:
            out.append(auth_keys)
        out.append(f"[site.langs.{section}.config]")
        out += [f"{toml_str(k)} = {toml_str(v)}" for k, v in config.items()]
        out.append(f"[site.langs.{section}.dirs]")
        out += [f"{toml_str(g)} = {toml_str(str(h))}" for g, h in dirs.items()]
    path = tmp_path / "wasmftpd.toml"
    path.write_text("\n".join(out) + "\n")
    return path


def test_python_auth_and_c_storage_serve_ftplib(plugins, tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "passwd").write_text(f"alice:{sha_crypt('wonderland', 'sha512')}\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from the host\n")
    config = site_config(
        tmp_path,
        auth=(plugins / "auth-passwd.wasm", {"file": "/passwd"}, {"/": users}),
        storage=(plugins / "storage-dir.wasm", {}, {"/": root}),
    )
    server = start_server(config)
    try:
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("alice", "wrong")
        client = server.ftp("alice", "wonderland")
        assert retr(client, "hello.txt") == b"hello from the host\n"

        data = payload(3 * 1024 * 1024 + 17, seed=5)
        client.mkd("uploads")
        client.storbinary("STOR uploads/big file.bin", io.BytesIO(data))
        assert (root / "uploads" / "big file.bin").read_bytes() == data
        assert retr(client, "uploads/big file.bin") == data
        assert client.size("uploads/big file.bin") == len(data)

        client.storbinary("STOR uploads/Grüße.txt", io.BytesIO("ünïcödé\n".encode()))
        names = sorted(client.nlst("uploads"))
        assert [n.rsplit("/", 1)[-1] for n in names] == ["Grüße.txt", "big file.bin"]
        listing = []
        client.retrlines("LIST uploads", listing.append)
        assert any(line.endswith("big file.bin") and str(len(data)) in line for line in listing)
        facts = dict(client.mlsd("uploads"))
        assert facts["big file.bin"]["type"] == "file"

        client.rename("uploads/Grüße.txt", "uploads/renamed.txt")
        assert (root / "uploads" / "renamed.txt").exists()
        client.delete("uploads/renamed.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            client.rmd("uploads")  # not empty
        client.delete("uploads/big file.bin")
        client.rmd("uploads")
        assert sorted(p.name for p in root.iterdir()) == ["hello.txt"]
        client.quit()
    finally:
        server.stop()


def password_file_site(tmp_path, plugin, name, auth_config, reuse):
    """A running server whose auth plugin reads the password file `name` (alice
    / "first pw", an hour old) and whose storage is storage-fs on a fresh root:
    (server, the file, its time, the root)."""
    users = tmp_path / "users"
    users.mkdir()
    passwd = users / name
    passwd.write_text(f"alice:{sha_crypt('first pw', 'sha512')}\n")
    old = time.time() - 3600
    os.utime(passwd, (old, old))
    root = tmp_path / "root"
    root.mkdir()
    config = site_config(
        tmp_path,
        auth=(plugin, auth_config, {"/": users}),
        storage=("builtin:storage-fs", {}, {"/": root}),
        auth_keys=f"reuse_instances = {'true' if reuse else 'false'}",
    )
    return start_server(config), passwd, old, root


def change_alices_password(server, passwd, old):
    """Gives alice "other pw" in a hash of the same length and sets the file's
    time back to another old one, so that only reading the file again (or its
    size and time, which differ from before) tells; "first pw" is refused."""
    passwd.write_text(f"alice:{sha_crypt('other pw', 'sha512')}\n")
    os.utime(passwd, (old - 60, old - 60))
    with pytest.raises(ftplib.error_perm, match="^530"):
        server.ftp("alice", "first pw")


def test_warm_auth_instances_see_password_file_edits_at_once(plugins, tmp_path):
    """With `reuse_instances`, auth-passwd (Python) keeps its parsed password
    file between logins; an edit still counts at the next login, whether the
    file's time is fresh or set back to an older one (as a copy with `cp -p`
    or an rsync would leave it)."""
    server, passwd, old, _ = password_file_site(
        tmp_path, plugins / "auth-passwd.wasm", "passwd", {"file": "/passwd"}, reuse=True)
    try:
        for _ in range(3):
            server.ftp("alice", "first pw").quit()
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("bob", "bob pw")

        change_alices_password(server, passwd, old)
        server.ftp("alice", "other pw").quit()

        # A fresh edit: bob is added, alice locked.
        passwd.write_text(f"alice:!locked\nbob:{sha_crypt('bob pw', 'sha512')}\n")
        server.ftp("bob", "bob pw").quit()
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("alice", "other pw")
    finally:
        server.stop()


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "reused"])
def test_c_auth_htpasswd_serves_ftplib_and_sees_edits_at_once(plugins, tmp_path, reuse):
    """A site with auth-htpasswd (C): the file is read at every login, so a
    new password, a locked account and a missing file count at the next login,
    with fresh or reused instances."""
    server, htpasswd, old, root = password_file_site(
        tmp_path, plugins / "auth-htpasswd.wasm", "htpasswd", {"home": "/{user}"}, reuse=reuse)
    (root / "alice").mkdir()
    try:
        client = server.ftp("alice", "first pw")
        client.storbinary("STOR note.txt", io.BytesIO(b"from alice\n"))
        client.quit()
        assert (root / "alice" / "note.txt").read_bytes() == b"from alice\n"
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("alice", "wrong")
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("bob", "bob pw")

        change_alices_password(server, htpasswd, old)
        client = server.ftp("alice", "other pw")
        assert retr(client, "note.txt") == b"from alice\n"
        client.quit()

        # bob added, alice locked.
        htpasswd.write_text(f"alice:!locked\nbob:{bcrypt_hash('bob pw') or sha_crypt('bob pw', 'sha256')}\n")
        (root / "bob").mkdir()
        server.ftp("bob", "bob pw").quit()
        with pytest.raises(ftplib.error_perm, match="^530"):
            server.ftp("alice", "other pw")

        # No file: 421, and the log says why.
        htpasswd.unlink()
        with pytest.raises(ftplib.error_temp, match="^421"):
            server.ftp("bob", "bob pw")
        server.wait_for_log("auth-htpasswd: cannot read the password file /htpasswd: No such file or directory")
    finally:
        server.stop()


class HttpService:
    """A small HTTP service on 127.0.0.1: `GET PATH` answers what `pages`
    holds for it (404 otherwise), `POST` records the body and answers 204.
    Every request is recorded as (method, path, body)."""

    def __init__(self, pages=None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.pages = dict(pages or {})
        self.requests = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def record(self, body):
                with service.lock:
                    service.requests.append((self.command, self.path, body))

            def answer(self, status, raw=b""):
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self.record(None)
                found = service.pages.get(self.path)
                self.answer(200 if found is not None else 404, found or b"")

            def do_POST(self):
                self.record(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.answer(204)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def paths(self):
        with self.lock:
            return [path for _, path, _ in self.requests]

    def posted(self, count, timeout=15):
        """The first `count` POSTed bodies, waiting for them to arrive."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                bodies = [body for method, _, body in self.requests if method == "POST"]
            if len(bodies) >= count:
                return bodies
            time.sleep(0.02)
        raise AssertionError(f"expected {count} POSTs, got {bodies}")

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


def test_python_auth_attributes_over_http_give_each_user_a_root(plugins, tmp_path):
    """Contract 0.2 in Python: auth-passwd asks an HTTP service (wasi:http,
    allowed_hosts) for the user's attributes; storage-fs serves each user
    from the root the attribute names."""
    users = tmp_path / "users"
    users.mkdir()
    (users / "passwd").write_text(f"alice:{sha_crypt('alice pw', 'sha512')}\n"
                                  f"bob:{sha_crypt('bob pw', 'sha256')}\n")
    root = tmp_path / "root"
    (root / "bob-tree").mkdir(parents=True)
    (root / "bob-tree" / "mine.txt").write_bytes(b"bob's")
    service = HttpService({"/attrs/alice": b'{"root": "alice-tree"}', "/attrs/bob": b'{"root": "bob-tree"}'})
    try:
        config = tmp_path / "wasmftpd.toml"
        config.write_text(SERVER_DEFAULTS + f"""
[site.langs.auth]
plugin = {toml_str(str(plugins / "auth-passwd.wasm"))}
allowed_hosts = [{toml_str(service.origin)}]
[site.langs.auth.config]
file = "/passwd"
attributes_url = {toml_str(service.origin + "/attrs")}
[site.langs.auth.dirs]
"/" = {toml_str(str(users))}
[site.langs.storage]
plugin = "builtin:storage-fs"
config = {{ root_attribute = "root" }}
[site.langs.storage.dirs]
"/" = {toml_str(str(root))}
""")
        server = start_server(config)
        try:
            alice = server.ftp("alice", "alice pw")
            alice.storbinary("STOR a.txt", io.BytesIO(b"alice's"))
            assert (root / "alice-tree" / "a.txt").read_bytes() == b"alice's"
            alice.quit()
            bob = server.ftp("bob", "bob pw")
            assert bob.nlst() == ["mine.txt"]
            assert retr(bob, "mine.txt") == b"bob's"
            bob.quit()
            with pytest.raises(ftplib.error_perm, match="^530"):
                server.ftp("alice", "wrong")
        finally:
            server.stop()
        assert service.paths == ["/attrs/alice", "/attrs/bob"], "asked after a good password only"

        # Without the grant the request is denied inside the plugin: unavailable.
        proc = kit("--auth", plugins / "auth-passwd.wasm", "--dir", f"/={users}",
                   "--config", "file=/passwd", "--config", f"attributes_url={service.origin}/attrs",
                   "--expect", "alice:alice pw=unavailable")
        assert "ok   login alice -> unavailable" in proc.stdout, proc.stdout
        assert service.paths == ["/attrs/alice", "/attrs/bob"], "nothing left the server"
    finally:
        service.stop()


def test_javascript_accounts_give_python_storage_roots_and_quotas(plugins, tmp_path):
    """Contract 0.2 across languages: auth-rules (JavaScript) hands each account
    a root attribute, a quota and a session limit; storage-quota (Python) serves
    each session from its root and enforces the account's quota, else its own."""
    root = tmp_path / "root"
    root.mkdir()
    config = site_config(
        tmp_path,
        auth=(plugins / "auth-rules.wasm", {
            "users.dan.password": sha_crypt("dan pw", "sha256"),
            "users.dan.allow": "127.0.0.0/8, ::1",
            "users.dan.quota": "1MiB",
            "users.dan.max_sessions": "1",
            "users.dan.attributes.root": "dan",
            "users.eve.password": sha_crypt("eve pw", "sha512"),
            "users.eve.attributes.root": "eve",
        }, {}),
        storage=(plugins / "storage-quota.wasm", {"quota": "64MiB", "root_attribute": "root"}, {"/": root}),
    )
    server = start_server(config)
    try:
        client = server.ftp("dan", "dan pw")
        # One session at a time for dan: the host refuses a second with 421.
        with pytest.raises(ftplib.error_temp, match="^421"):
            server.ftp("dan", "dan pw")
        small = payload(300_000, seed=9)
        client.storbinary("STOR small.bin", io.BytesIO(small))
        assert (root / "dan" / "small.bin").read_bytes() == small
        assert retr(client, "small.bin") == small
        # A download larger than the plugin's memory limit: its bytes must not
        # pass through (and stay in) the Python heap.
        (root / "dan" / "large.bin").write_bytes(bytes(range(256)) * (80 * 4096))
        got = [0]
        client.retrbinary("RETR large.bin", lambda b: got.__setitem__(0, got[0] + len(b)))
        assert got[0] == 80 * 1024 * 1024
        (root / "dan" / "large.bin").unlink()
        # Over dan's own 1 MiB quota: the transfer fails with 552.
        with pytest.raises(ftplib.error_perm, match="^552"):
            client.storbinary("STOR big.bin", io.BytesIO(payload(2 * 1024 * 1024, seed=3)))
        client.delete("small.bin")
        client.quit()

        # eve has no quota of her own: the storage's 64 MiB applies.
        eve = server.ftp("eve", "eve pw")
        big = payload(2 * 1024 * 1024, seed=4)
        eve.storbinary("STOR big.bin", io.BytesIO(big))
        assert (root / "eve" / "big.bin").read_bytes() == big
        assert eve.nlst() == ["big.bin"]
        eve.quit()
    finally:
        server.stop()


def login_from(server, address, user, password):
    """The reply to a login from another loopback address (127.0.0.2 ...)."""
    client = ftplib.FTP(timeout=20, source_address=(address, 0))
    client.connect(server.host, server.port)
    try:
        client.login(user, password)
        client.quit()
        return "230"
    except ftplib.all_errors as e:
        client.close()
        return str(e)[:3]


def test_javascript_auth_fetches_its_blocklist_over_http(plugins, tmp_path):
    """auth-rules fetches `blocklist_url` with fetch() (wasi:http, granted by
    allowed_hosts) inside its synchronous login, keeps it in the host's cache,
    and refuses a blocked address before any password check."""
    service = HttpService({"/blocklist": b"# abuse feed\n192.0.2.0/24\n127.0.0.2\n"})
    users = {"users.dan.password": sha_crypt("dan pw", "sha256"), "blocklist_url": service.origin + "/blocklist"}
    try:
        def site(allowed):
            config = tmp_path / "wasmftpd.toml"
            config.write_text(SERVER_DEFAULTS + f"""
[site.langs.auth]
plugin = {toml_str(str(plugins / "auth-rules.wasm"))}
allowed_hosts = [{", ".join(toml_str(a) for a in allowed)}]
[site.langs.auth.config]
{chr(10).join(f"{toml_str(k)} = {toml_str(v)}" for k, v in users.items())}
[site.langs.storage]
plugin = "builtin:storage-fs"
[site.langs.storage.dirs]
"/" = {toml_str(str(tmp_path))}
""")
            return config

        server = start_server(site([service.origin]))
        try:
            assert login_from(server, "127.0.0.1", "dan", "dan pw") == "230"
            assert login_from(server, "127.0.0.2", "dan", "dan pw") == "530"
            assert login_from(server, "127.0.0.1", "dan", "wrong") == "530"
            assert login_from(server, "127.0.0.3", "dan", "dan pw") == "230"
        finally:
            server.stop()
        # Four logins, one fetch: the list came from the host's cache after that.
        assert service.paths == ["/blocklist"]

        # Granted another origin only: the request is denied inside the
        # plugin, the login is unavailable (421), the server names the origin.
        server = start_server(site(["http://127.0.0.1:9"]))
        try:
            assert login_from(server, "127.0.0.1", "dan", "dan pw") == "421"
            denied = server.wait_for_log("outbound request denied")
            assert service.origin.removeprefix("http://") in denied and "auth-rules" in denied, denied
            server.wait_for_log("auth-rules: blocklist_url " + re.escape(service.origin))
        finally:
            server.stop()
        assert service.paths == ["/blocklist"], "nothing left the server"
    finally:
        service.stop()


def test_c_storage_serves_each_account_from_its_root_attribute(plugins, tmp_path):
    root = tmp_path / "root"
    (root / "shared").mkdir(parents=True)
    config = site_config(
        tmp_path,
        auth=(plugins / "auth-rules.wasm", {
            "users.ann.password": sha_crypt("ann pw", "sha256"),
            "users.ann.attributes.root": "homes/ann",
            "users.bob.password": sha_crypt("bob pw", "sha256"),
            "users.bob.attributes.root": "homes/bob",
            "users.cat.password": sha_crypt("cat pw", "sha256"),
        }, {}),
        storage=(plugins / "storage-dir.wasm", {"root_attribute": "root"}, {"/": root}),
    )
    server = start_server(config)
    try:
        ann = server.ftp("ann", "ann pw")
        ann.storbinary("STOR a.txt", io.BytesIO(b"ann's"))
        ann.mkd("sub")
        bob = server.ftp("bob", "bob pw")
        assert bob.nlst() == []
        bob.storbinary("STOR b.txt", io.BytesIO(b"bob's"))
        assert sorted(ann.nlst()) == ["a.txt", "sub"]
        assert retr(bob, "b.txt") == b"bob's"
        ann.quit()
        bob.quit()
        assert (root / "homes" / "ann" / "a.txt").read_bytes() == b"ann's"
        assert (root / "homes" / "bob" / "b.txt").read_bytes() == b"bob's"
        # No root attribute: the login succeeds, its storage is refused.
        cat = server.ftp("cat", "cat pw")
        with pytest.raises(ftplib.error_perm, match="^550"):
            cat.nlst()
        cat.quit()
        server.wait_for_log("storage-dir: account cat has no usable `root` attribute")
    finally:
        server.stop()


def test_c_event_plugin_posts_each_event_over_http(plugins, tmp_path):
    """notify (C, the generated wasi:http bindings) POSTs a line per event to a
    service granted in allowed_hosts; without the grant every event fails with
    the host's refusal naming the origin."""
    service = HttpService()
    root = tmp_path / "root"
    root.mkdir()
    try:
        config = tmp_path / "wasmftpd.toml"
        config.write_text(SERVER_DEFAULTS + f"""
[site.langs.auth]
plugin = "builtin:auth-static"
[site.langs.auth.config.users.demo]
password = {toml_str(password_hash("demo"))}
[site.langs.storage]
plugin = "builtin:storage-fs"
[site.langs.storage.dirs]
"/" = {toml_str(str(root))}
[[site.langs.events]]
plugin = {toml_str(str(plugins / "notify.wasm"))}
allowed_hosts = [{toml_str(service.origin)}]
config = {{ url = {toml_str(service.origin + "/hook")}, kinds = "upload, rename,delete" }}
""")
        server = start_server(config)
        try:
            client = server.ftp("demo", "demo")
            client.storbinary("STOR report.pdf", io.BytesIO(b"x" * 12345))
            client.mkd("archive")  # not in `kinds`
            client.rename("report.pdf", "archive/Grüße q3.pdf")
            client.delete("archive/Grüße q3.pdf")
            client.quit()
            lines = [body.decode() for body in service.posted(3)]
        finally:
            server.stop()
        assert {p for p in service.paths} == {"/hook"}
        assert len(lines) == 3, lines
        assert re.fullmatch(r"upload ok: demo from 127\.0\.0\.1 on site langs: /report\.pdf "
                            r"\(12345 bytes, \d+ ms\)\n", lines[0]), lines[0]
        assert lines[1] == "rename ok: demo from 127.0.0.1 on site langs: /report.pdf -> /archive/Grüße q3.pdf\n"
        assert lines[2] == "delete ok: demo from 127.0.0.1 on site langs: /archive/Grüße q3.pdf\n"

        # Through the kit, without --allow-host: each event fails, naming the origin.
        proc = kit("--events", plugins / "notify.wasm", "--config", f"url={service.origin}/hook")
        assert proc.returncode == 1
        denied = f"POST {service.origin}/hook: request to {service.origin} denied: not in this plugin's allowed_hosts"
        assert f"FAIL event `upload` is handled: {denied}" in proc.stdout, proc.stdout
        assert len(service.posted(3)) == 3, "nothing more left the server"
        # With the grant the kit's whole event battery passes.
        assert_all_pass(kit("--events", plugins / "notify.wasm", "--allow-host", service.origin,
                            "--config", f"url={service.origin}/hook"))
        assert len(service.posted(3 + 114)) == 3 + 114
    finally:
        service.stop()


def test_the_languages_example_config_serves(plugins):
    config = REPO / "examples" / "plugins" / "languages.toml"
    env = dict(os.environ, XDG_CACHE_HOME=str(CACHE))
    checked = subprocess.run([str(BINARY), "check", "--config", str(config)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    server = start_server(config, extra_args=("--listen", "127.0.0.1:0"))
    try:
        client = server.ftp("demo", "demo")
        assert retr(client, "welcome.txt") == (REPO / "examples" / "quickstart-root" / "welcome.txt").read_bytes()
        with pytest.raises(ftplib.error_perm, match="^550"):
            client.storbinary("STOR nope.txt", io.BytesIO(b"read-only"))
        client.quit()
    finally:
        server.stop()
