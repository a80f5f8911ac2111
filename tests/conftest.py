"""End-to-end test harness: starts the real `wasmftpd` binary on port 0 with a
generated config and hands tests a running server.

Every server gets its own temporary root and config; the precompiled-plugin
cache is shared across the test session (target/e2e-cache) so only the first
start pays for compiling the builtins.
"""

import ftplib
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("WASMFTPD_BIN", REPO / "target" / "debug" / "wasmftpd"))
CACHE = REPO / "target" / "e2e-cache"
START_TIMEOUT = 120  # the first start compiles the builtin plugins

_hash_cache = {}


def password_hash(password: str) -> str:
    """An argon2id hash made by `wasmftpd hash-password`, as a user would."""
    if password not in _hash_cache:
        out = subprocess.run(
            [str(BINARY), "hash-password"],
            input=password + "\n",
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        _hash_cache[password] = out.stdout.strip()
    return _hash_cache[password]


def toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Server:
    def __init__(self, proc, addrs, log_lines, config_path):
        self.proc = proc
        self.addrs = addrs  # every "listening on" address, in log order
        self.log_lines = log_lines
        self.config_path = config_path

    @property
    def host(self):
        return self.addrs[0][0]

    @property
    def port(self):
        return self.addrs[0][1]

    def ftp(self, user="demo", password="demo", port=None, timeout=20):
        """An ftplib client, connected and (unless user is None) logged in."""
        client = ftplib.FTP(timeout=timeout)
        client.connect(self.host, port or self.port)
        if user is not None:
            client.login(user, password)
        return client

    def url(self, path="", user="demo", password="demo"):
        return f"ftp://{user}:{password}@{self.host}:{self.port}/{path.lstrip('/')}"

    def log(self):
        return "\n".join(self.log_lines)

    def wait_for_log(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.log_lines):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"log never matched {pattern!r}:\n{self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(config_path: Path, extra_args=(), expect_listeners=1, preexec_fn=None) -> Server:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: run `cargo build` first")
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(CACHE)
    env.setdefault("RUST_LOG", "info")
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--config", str(config_path), *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
    )
    lines = []
    addrs = []
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            m = re.search(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)", line)
            if m:
                addrs.append((m.group(1).strip("[]"), int(m.group(2))))
                if len(addrs) >= expect_listeners:
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or len(addrs) < expect_listeners:
        proc.kill()
        proc.wait()
        raise AssertionError("server did not start:\n" + "\n".join(lines))
    return Server(proc, addrs, lines, config_path)


def site_toml(name, users, root, extra="", anonymous=False):
    """A [site.NAME] block using the builtin plugins.

    users: {name: (password, permissions)}; root: the directory served as "/".
    """
    out = [f"[site.{name}]", extra, f"[site.{name}.auth]", 'plugin = "builtin:auth-static"']
    out.append(f"[site.{name}.auth.config]")
    out.append(f"anonymous = {'true' if anonymous else 'false'}")
    for user, (password, perms) in users.items():
        out.append(f"[site.{name}.auth.config.users.{user}]")
        out.append(f"password = {toml_str(password_hash(password))}")
        out.append(f"permissions = {toml_str(perms)}")
    out.append(f"[site.{name}.storage]")
    out.append('plugin = "builtin:storage-fs"')
    out.append(f"[site.{name}.storage.dirs]")
    out.append(f'"/" = {toml_str(str(root))}')
    return "\n".join(out) + "\n"


SERVER_DEFAULTS = """
[server]
listen = ["127.0.0.1:0"]
passive_ports = "40000-44999"
login_failure_delay = "0s"
"""


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(server_extra="", sites=None) -> Server with one site
    `main` (users demo/demo with all permissions, reader/reader read-only),
    serving tmp_path/root."""
    started = []

    def make(server_extra="", sites=None, extra_args=(), expect_listeners=1, anonymous=False):
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        if sites is None:
            sites = site_toml(
                "main",
                {"demo": ("demo", "all"), "reader": ("reader", "read-only")},
                root,
                anonymous=anonymous,
            )
        config = tmp_path / "wasmftpd.toml"
        config.write_text(SERVER_DEFAULTS + server_extra + "\n" + sites)
        server = start_server(config, extra_args, expect_listeners)
        server.root = root
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS (S3 on a free loopback port) for the whole test run;
    tests take their own bucket from `s3_bucket`."""
    from seaweedfs import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


class S3Area:
    """A test's own part of the shared test bucket: every key under `prefix`.
    (Each bucket is a SeaweedFS collection with volumes of its own, so tests
    share one bucket rather than making many.)"""

    def __init__(self, client, bucket, prefix):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def keys(self):
        """Keys under the area, without its prefix."""
        return [k[len(self.prefix) :] for k in self.client.keys(self.bucket, self.prefix)]

    def get(self, key):
        return self.client.get(self.bucket, self.prefix + key)

    def put(self, key, data):
        self.client.put(self.bucket, self.prefix + key, data)

    def uploads(self):
        """Keys of unfinished multipart uploads in the area."""
        return [
            k[len(self.prefix) :]
            for k in self.client.multipart_uploads(self.bucket)
            if k.startswith(self.prefix)
        ]


_area_count = [0]


@pytest.fixture
def s3_area(seaweedfs):
    """An empty area (key prefix) of the shared test bucket."""
    bucket = "wasmftpd-tests"
    if not getattr(seaweedfs, "test_bucket", None):
        seaweedfs.client.create_bucket(bucket)
        seaweedfs.test_bucket = bucket
    _area_count[0] += 1
    return S3Area(seaweedfs.client, bucket, f"t{_area_count[0]}/")
