#!/usr/bin/env python3
"""FTPS benchmark clients on Python's `ssl` module (explicit AUTH TLS, PBSZ 0,
PROT P, TLS 1.3 only, certificate not verified: the benchmark's is self-signed).
Run by bench/ftps.sh next to curl; standard library only.

    ftps_clients.py retr  --port N --user U --pass P --path /big.bin
        EPSV, RETR into one preallocated buffer (recv_into), byte count checked
        against SIZE
    ftps_clients.py stor  --port N --user U --pass P --size BYTES --path /x
        EPSV, STOR of SIZE bytes from one preallocated buffer, checked with SIZE
        afterwards, then DELE
    ftps_clients.py login --port N --user U --pass P [--clients 8] [--secs 5]
        CLIENTS processes, each looping connect + AUTH TLS (a full handshake) +
        USER + PASS + QUIT

Data connections resume the control connection's TLS session, as curl, lftp and
FileZilla do (vsftpd and wasmftpd require it by default).

Output, one line on stdout, the format bench/compare.sh reads:
    result server=LABEL test=NAME unit=UNIT median=X runs=X ops=N
Any unexpected reply exits with status 1 and `ftps_clients.py: error: ...`.
"""

import argparse
import multiprocessing
import os
import re
import socket
import ssl
import sys
import time

BUF = 16 << 20
TIMEOUT = 60.0


class Failure(Exception):
    pass


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class Control:
    """An FTPS control connection: AUTH TLS, then replies read by line."""

    def __init__(self, ctx, host, port):
        self.ctx = ctx
        self.host = host
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = raw
        self.rfile = raw.makefile("rb")
        self.expect("greeting", (220,))
        self.cmd("AUTH TLS", (234,))
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.rfile = self.sock.makefile("rb")

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
        return self.expect("PASS ****" if line.startswith("PASS ") else line, codes)

    def login(self, user, password):
        code, text = self.send_user(user)
        if code == 331:
            self.cmd(f"PASS {password}", (230,))
        elif code != 230:
            raise Failure(f"USER: got {text!r}")

    def send_user(self, user):
        self.sock.sendall(f"USER {user}\r\n".encode())
        return self.reply()

    def protect(self):
        self.cmd("PBSZ 0", (200,))
        self.cmd("PROT P", (200,))
        self.cmd("TYPE I", (200,))

    def data(self):
        """EPSV and the TCP connection; TLS starts after the transfer command."""
        text = self.cmd("EPSV", (229,))
        m = re.search(r"\((.)\1\1(\d+)\1\)", text)
        if not m:
            raise Failure(f"EPSV: unparsable reply {text!r}")
        return socket.create_connection((self.host, int(m.group(2))), timeout=TIMEOUT)

    def secure(self, raw):
        return self.ctx.wrap_socket(raw, server_hostname=self.host, session=self.sock.session)

    def size(self, path):
        return int(self.cmd(f"SIZE {path}", (213,)).split()[1])

    def quit(self):
        self.cmd("QUIT", (221,))
        self.sock.close()


def note_tls(args, d):
    """What was negotiated, on stderr (the same for every server, or not comparable)."""
    print(
        f"ftps_clients.py: {args.label}: data connection {d.version()} {d.cipher()[0]}, "
        f"session {'resumed' if d.session_reused else 'NOT resumed'}",
        file=sys.stderr,
    )


def close_data(d):
    """close_notify, then the close (a server takes a cut as a failed transfer)."""
    try:
        d = d.unwrap()
    except (ssl.SSLError, OSError):
        pass
    d.close()


def result(args, test, unit, value, ops):
    print(
        f"result server={args.label} test={test} unit={unit} median={value:.4f} "
        f"runs={value:.4f} ops={ops}",
        flush=True,
    )


def run_retr(args):
    buf = memoryview(bytearray(BUF))
    c = Control(context(), args.host, args.port)
    c.login(args.user, args.password)
    c.protect()
    size = c.size(args.path)
    raw = c.data()
    start = time.perf_counter()
    c.cmd(f"RETR {args.path}", (125, 150))
    d = c.secure(raw)
    note_tls(args, d)
    got = 0
    while True:
        n = d.recv_into(buf)
        if n == 0:
            break
        got += n
    close_data(d)
    c.expect("RETR (completion)", (226, 250))
    secs = time.perf_counter() - start
    if got != size:
        raise Failure(f"RETR {args.path}: got {got} bytes, SIZE said {size}")
    c.quit()
    result(args, "retr", "MB/s", got / 1e6 / secs, got)


def run_stor(args):
    buf = memoryview(bytearray(os.urandom(1 << 20) * (BUF >> 20)))
    c = Control(context(), args.host, args.port)
    c.login(args.user, args.password)
    c.protect()
    raw = c.data()
    start = time.perf_counter()
    c.cmd(f"STOR {args.path}", (125, 150))
    d = c.secure(raw)
    note_tls(args, d)
    left = args.size
    while left > 0:
        n = min(left, len(buf))
        d.sendall(buf[:n])
        left -= n
    close_data(d)
    c.expect("STOR (completion)", (226, 250))
    secs = time.perf_counter() - start
    got = c.size(args.path)
    if got != args.size:
        raise Failure(f"STOR {args.path}: server holds {got} bytes, sent {args.size}")
    c.cmd(f"DELE {args.path}", (250,))
    c.quit()
    result(args, "stor", "MB/s", args.size / 1e6 / secs, args.size)


def login_worker(args, go, deadline, out):
    ctx = context()
    go.wait()
    n = 0
    try:
        while time.monotonic() < deadline.value:
            c = Control(ctx, args.host, args.port)
            c.login(args.user, args.password)
            c.quit()
            n += 1
        out.send((n, None))
    except Exception as e:  # reported by the parent
        out.send((n, f"{type(e).__name__}: {e}"))


def run_login(args):
    go = multiprocessing.Event()
    deadline = multiprocessing.Value("d", 0.0)
    workers, pipes = [], []
    for _ in range(args.clients):
        recv, send = multiprocessing.Pipe(duplex=False)
        p = multiprocessing.Process(target=login_worker, args=(args, go, deadline, send))
        p.start()
        workers.append(p)
        pipes.append(recv)
    start = time.monotonic()
    deadline.value = start + args.secs
    go.set()
    total, errors = 0, []
    for recv in pipes:
        n, err = recv.recv()
        total += n
        if err:
            errors.append(err)
    secs = time.monotonic() - start
    for p in workers:
        p.join()
    if errors:
        raise Failure(f"{len(errors)} login clients failed, first: {errors[0]}")
    result(args, "login", "logins/s", total / secs, total)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test", choices=["retr", "stor", "login"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--pass", dest="password", required=True)
    parser.add_argument("--label", default="server")
    parser.add_argument("--path", default="/big.bin")
    parser.add_argument("--size", type=int, default=1 << 30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--secs", type=float, default=5.0)
    args = parser.parse_args()
    try:
        {"retr": run_retr, "stor": run_stor, "login": run_login}[args.test](args)
    except (Failure, OSError, ssl.SSLError) as e:
        print(f"ftps_clients.py: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
