#!/usr/bin/env python3
"""Benchmark clients that are not ours: what a user's script would do, in Python.

bench/compare.sh runs these next to bench/ftpbench (and curl), so the figures show
what a server does for a client that needs CPU of its own. Standard library only.

    clients.py stor  --port N --user U --pass P --size BYTES [--path /x]
        raw sockets: EPSV, STOR of SIZE bytes sent from one preallocated buffer
        (sendall of a memoryview), checked with SIZE afterwards; the file is
        left on the server (see `remove`), so that the server's CPU measured
        around this command is the upload's only
    clients.py retr  --port N --user U --pass P --path /big.bin
        raw sockets: EPSV, RETR received with recv_into one preallocated buffer,
        byte count checked against SIZE
    clients.py small --port N --user U --pass P [--count 1000] [--file-size 4096]
        ftplib: COUNT x (storbinary, retrbinary, delete) in one session, every file
        with different content, checked when it comes back
    clients.py login --port N --user U --pass P [--clients 8] [--secs 5]
        CLIENTS processes, each looping ftplib connect + login (USER, PASS) + quit
    clients.py remove --port N --user U --pass P --path /x --size BYTES
        not a benchmark: checks that the server holds SIZE bytes at PATH, deletes it
        (after an upload made by another client)

Output, one line on stdout (the format of ftpbench's result lines):
    result server=LABEL test=NAME unit=UNIT median=X runs=X ops=N
where ops counts what the server did during the whole invocation (bytes moved,
files, logins including the untimed check login), for CPU per operation.
Any unexpected reply exits with status 1 and `clients.py: error: ...` on stderr.
"""

import argparse
import ftplib
import io
import multiprocessing
import os
import re
import socket
import sys
import time

BUF = 16 << 20  # the preallocated buffer of the raw clients
TIMEOUT = 60.0


class Failure(Exception):
    pass


class Control:
    """A raw control connection: one sendall per command, replies read by line."""

    def __init__(self, host, port):
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.expect("greeting", (220,))

    def reply(self):
        line = self.rfile.readline()
        if not line:
            raise Failure("control connection closed by the server")
        text = line
        if line[3:4] == b"-":
            end = line[:3] + b" "
            while not line.startswith(end):
                line = self.rfile.readline()
                if not line:
                    raise Failure("control connection closed in a multi-line reply")
                text += line
        return int(line[:3]), text.decode("utf-8", "replace").rstrip()

    def expect(self, what, codes):
        code, text = self.reply()
        if code not in codes:
            raise Failure(f"{what}: expected {codes}, got {text!r}")
        return text

    def cmd(self, line, codes):
        self.sock.sendall(line.encode() + b"\r\n")
        shown = "PASS ****" if line.startswith("PASS ") else line
        return self.expect(shown, codes)

    def login(self, user, password):
        self.sock.sendall(f"USER {user}\r\n".encode())
        code, text = self.reply()
        if code == 331:
            self.cmd(f"PASS {password}", (230,))
        elif code != 230:
            raise Failure(f"USER: got {text!r}")
        self.cmd("TYPE I", (200,))

    def data(self):
        """EPSV, then the data connection (opened before the transfer command)."""
        text = self.cmd("EPSV", (229,))
        m = re.search(r"\((.)\1\1(\d+)\1\)", text)
        if not m:
            raise Failure(f"EPSV: unparsable reply {text!r}")
        d = socket.create_connection((self.host, int(m.group(2))), timeout=TIMEOUT)
        return d

    def size(self, path):
        return int(self.cmd(f"SIZE {path}", (213,)).split()[1])

    def quit(self):
        self.cmd("QUIT", (221,))
        self.sock.close()


def result(args, test, unit, value, ops):
    print(
        f"result server={args.label} test={test} unit={unit} median={value:.4f} "
        f"runs={value:.4f} ops={ops}",
        flush=True,
    )


def run_stor(args):
    buf = memoryview(bytearray(os.urandom(1 << 20) * (BUF >> 20)))
    path = args.path or f"/clients-stor-{os.getpid()}.bin"
    c = Control(args.host, args.port)
    c.login(args.user, args.password)
    d = c.data()
    start = time.perf_counter()
    c.cmd(f"STOR {path}", (125, 150))
    left = args.size
    while left > 0:
        n = min(left, len(buf))
        d.sendall(buf[:n])
        left -= n
    d.close()
    c.expect("STOR (completion)", (226, 250))
    secs = time.perf_counter() - start
    got = c.size(path)
    if got != args.size:
        raise Failure(f"STOR {path}: server holds {got} bytes, sent {args.size}")
    c.quit()
    result(args, "stor", "MB/s", args.size / 1e6 / secs, args.size)


def run_retr(args):
    buf = memoryview(bytearray(BUF))
    c = Control(args.host, args.port)
    c.login(args.user, args.password)
    size = c.size(args.path)
    d = c.data()
    start = time.perf_counter()
    c.cmd(f"RETR {args.path}", (125, 150))
    got = 0
    while True:
        n = d.recv_into(buf)
        if n == 0:
            break
        got += n
    d.close()
    c.expect("RETR (completion)", (226, 250))
    secs = time.perf_counter() - start
    if got != size:
        raise Failure(f"RETR {args.path}: got {got} bytes, SIZE said {size}")
    c.quit()
    result(args, "retr", "MB/s", got / 1e6 / secs, got)


def run_small(args):
    ftp = ftplib.FTP()
    ftp.connect(args.host, args.port, timeout=TIMEOUT)
    ftp.login(args.user, args.password)
    # Different content per file, so a server handing back the wrong file is caught.
    blob = os.urandom(args.count * args.file_size)
    prefix = f"/clients-small-{os.getpid()}-"
    start = time.perf_counter()
    for i in range(args.count):
        content = blob[i * args.file_size : (i + 1) * args.file_size]
        name = f"{prefix}{i}"
        ftp.storbinary(f"STOR {name}", io.BytesIO(content))
        parts = []
        ftp.retrbinary(f"RETR {name}", parts.append)
        got = b"".join(parts)
        if got != content:
            raise Failure(f"RETR {name}: got {len(got)} bytes that differ from the upload")
        ftp.delete(name)
    secs = time.perf_counter() - start
    ftp.quit()
    result(args, "small", "files/s", args.count / secs, args.count)


def login_once(args):
    ftp = ftplib.FTP()
    ftp.connect(args.host, args.port, timeout=TIMEOUT)
    ftp.login(args.user, args.password)
    ftp.quit()


def login_worker(args, go, deadline, out):
    go.wait()
    n = 0
    try:
        while time.monotonic() < deadline.value:
            login_once(args)
            n += 1
        out.send((n, None))
    except Exception as e:  # any failure ends this client; reported by the parent
        out.send((n, f"login #{n + 1} of a client: {e!r}"))


def run_login(args):
    # One untimed login first: a wrong password fails here with a clear message.
    login_once(args)
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    deadline = ctx.Value("d", 0.0)
    procs, pipes = [], []
    for _ in range(args.clients):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=login_worker, args=(args, go, deadline, child))
        p.start()
        procs.append(p)
        pipes.append(parent)
    start = time.monotonic()
    deadline.value = start + args.secs
    go.set()
    total, errors = 0, []
    for p, pipe in zip(procs, pipes):
        n, err = pipe.recv()
        p.join()
        total += n
        if err:
            errors.append(err)
    secs = time.monotonic() - start
    if errors:
        raise Failure(errors[0])
    result(args, "login", "logins/s", total / secs, total + 1)


def run_remove(args):
    c = Control(args.host, args.port)
    c.login(args.user, args.password)
    got = c.size(args.path)
    if got != args.size:
        raise Failure(f"{args.path}: server holds {got} bytes, expected {args.size}")
    c.cmd(f"DELE {args.path}", (250,))
    c.quit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("test", choices=["stor", "retr", "small", "login", "remove"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--pass", dest="password", required=True)
    ap.add_argument("--label", default="ftp")
    ap.add_argument("--size", type=int, default=1 << 30, help="STOR bytes")
    ap.add_argument("--path", help="RETR file / STOR target")
    ap.add_argument("--count", type=int, default=1000, help="small files")
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--clients", type=int, default=8, help="login processes")
    ap.add_argument("--secs", type=float, default=5.0, help="login test duration")
    args = ap.parse_args()
    if args.test in ("retr", "remove") and not args.path:
        ap.error(f"{args.test} needs --path")
    try:
        tests = {
            "stor": run_stor,
            "retr": run_retr,
            "small": run_small,
            "login": run_login,
            "remove": run_remove,
        }
        tests[args.test](args)
    except (Failure, OSError, EOFError, ftplib.Error) as e:
        print(f"clients.py: error: {args.test} test: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
