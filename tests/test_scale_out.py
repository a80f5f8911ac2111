"""Scale-out: two wasmftpd processes, each through its own S3 gateway of the
same SeaweedFS store, the same bucket and the same HTTP user directory
(builtin:auth-http). Neither keeps state of its own: what one stores, the
other lists and serves."""

import ftplib
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import start_server, toml_str
from seaweedfs import ACCESS_KEY, SECRET_KEY
from test_s3 import payload, retr, stor

USERS = {f"user{i}": f"pw-{i}" for i in range(8)}


class UserDirectory(BaseHTTPRequestHandler):
    """The HTTP user directory both servers ask (auth-http's protocol: POST
    the credentials as JSON, 200 with the account or 401)."""

    logins = []

    def read_body(self):
        if "Content-Length" in self.headers:
            return self.rfile.read(int(self.headers["Content-Length"]))
        body = b""  # chunked
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            chunk = self.rfile.read(size + 2)[:size]
            if size == 0:
                return body
            body += chunk

    def do_POST(self):
        body = json.loads(self.read_body())
        self.logins.append(body["user"])
        if USERS.get(body["user"]) == body["password"]:
            answer = json.dumps({"home": "/", "permissions": "all"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        else:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def user_directory():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), UserDirectory)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def host_config(directory, endpoint, bucket, prefix):
    return f"""
[server]
listen = ["127.0.0.1:0"]
login_failure_delay = "0s"

[site.main]
[site.main.auth]
plugin = "builtin:auth-http"
allowed_hosts = [{toml_str(directory)}]
[site.main.auth.config]
url = {toml_str(directory + "/login")}

[site.main.storage]
plugin = "builtin:storage-s3"
allowed_hosts = [{toml_str(endpoint)}]
[site.main.storage.config]
endpoint = {toml_str(endpoint)}
bucket = {toml_str(bucket)}
prefix = {toml_str(prefix + "{user}")}
access_key_id = {toml_str(ACCESS_KEY)}
secret_access_key = {toml_str(SECRET_KEY)}
part_size = "5MiB"
"""


@pytest.fixture
def two_hosts(tmp_path, seaweedfs, s3_area, user_directory):
    """Host A behind the first S3 gateway, host B behind a second one."""
    second_gateway = seaweedfs.gateway()
    hosts = []
    for name, endpoint in (("a", s3_area.client.endpoint), ("b", second_gateway.endpoint)):
        config = tmp_path / f"{name}.toml"
        config.write_text(host_config(user_directory, endpoint, s3_area.bucket, s3_area.prefix))
        hosts.append(start_server(config))
    yield hosts
    for host in hosts:
        host.stop()


def login(host, user):
    return host.ftp(user, USERS[user])


def test_what_one_host_stores_the_other_lists_and_serves(two_hosts, s3_area):
    a, b = two_hosts
    data = payload(7 * 1024 * 1024 + 11, seed=21)  # two parts of 5 MiB
    on_a = login(a, "user0")
    on_a.voidcmd("TYPE I")
    on_a.mkd("shared")
    stor(on_a, "shared/film.bin", data)

    on_b = login(b, "user0")
    assert [name.rsplit("/", 1)[-1] for name in on_b.nlst("shared")] == ["film.bin"]
    on_b.voidcmd("TYPE I")  # NLST left it at A; SIZE counts in the current type
    assert on_b.size("shared/film.bin") == len(data)
    assert retr(on_b, "shared/film.bin") == data
    assert retr(on_b, "shared/film.bin", rest=5 * 1024 * 1024) == data[5 * 1024 * 1024 :]

    # And back: B renames and deletes, A sees it at once.
    stor(on_b, "shared/note.txt", b"from b")
    on_b.rename("shared/note.txt", "shared/renamed.txt")
    assert retr(on_a, "shared/renamed.txt") == b"from b"
    on_b.delete("shared/film.bin")
    with pytest.raises(ftplib.error_perm, match="^550"):
        retr(on_a, "shared/film.bin")
    assert s3_area.keys() == ["user0/shared/", "user0/shared/renamed.txt"]
    on_a.quit()
    on_b.quit()


def test_eight_clients_upload_through_both_hosts_at_once(two_hosts, s3_area):
    a, b = two_hosts
    sizes = {user: (1 + i) * 1024 * 1024 + i for i, user in enumerate(USERS)}  # 1-8 MiB
    files = {user: payload(size, seed=100 + i) for i, (user, size) in enumerate(sizes.items())}
    start = threading.Barrier(len(USERS))

    def upload(user, host):
        client = login(host, user)
        client.voidcmd("TYPE I")
        start.wait(timeout=60)
        reply = client.storbinary(
            "STOR upload.bin", io.BytesIO(files[user]), blocksize=128 * 1024
        )
        client.quit()
        return reply

    with ThreadPoolExecutor(len(USERS)) as pool:
        futures = [
            pool.submit(upload, user, a if i % 2 == 0 else b) for i, user in enumerate(USERS)
        ]
        replies = [f.result(timeout=300) for f in futures]
    assert all(r.startswith("226") for r in replies), replies

    # Every object is intact in the bucket, and each reads back byte for
    # byte through the host that did not store it.
    assert sorted(s3_area.keys()) == sorted(f"{user}/upload.bin" for user in USERS)
    assert s3_area.uploads() == []
    for i, user in enumerate(USERS):
        assert s3_area.get(f"{user}/upload.bin") == files[user], user
        other = b if i % 2 == 0 else a
        client = login(other, user)
        assert retr(client, "upload.bin") == files[user], user
        client.quit()
    assert set(UserDirectory.logins) >= set(USERS)
