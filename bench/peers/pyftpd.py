#!/usr/bin/env python3
"""pyftpdlib as a benchmark peer for bench/compare.sh.

Serves ROOT on HOST:PORT with one user whose password is compared in plain text
(pyftpdlib's DummyAuthorizer), with full permissions, a passive port range and logging
at WARNING (the other servers run without per-command logs). Single-process
FTPServer (pyftpdlib's default async loop); TCP_NODELAY and sendfile are pyftpdlib's
defaults (on).

    PYFTPD_PASS=secret pyftpd.py --root DIR --port N --user U [--host 127.0.0.1]
                                 [--passive 45000-45999]
"""

import argparse
import logging
import os
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--passive", default="45000-45999", help="LO-HI")
    a = ap.parse_args()
    password = os.environ.get("PYFTPD_PASS")
    if password is None:
        ap.error("PYFTPD_PASS is not set")
    lo, hi = (int(x) for x in a.passive.split("-", 1))

    logging.basicConfig(level=logging.WARNING, format="pyftpd: %(message)s")

    authorizer = DummyAuthorizer()
    authorizer.add_user(a.user, password, os.path.abspath(a.root), perm="elradfmwMT")

    class Handler(FTPHandler):
        pass

    Handler.authorizer = authorizer
    Handler.passive_ports = range(lo, hi + 1)
    Handler.banner = "pyftpdlib ready."

    server = FTPServer((a.host, a.port), Handler)
    server.max_cons = 0  # no limit (the login test keeps sockets in TIME_WAIT only)
    server.max_cons_per_ip = 0
    print(f"pyftpd: listening on {a.host}:{a.port}", file=sys.stderr, flush=True)
    server.serve_forever(handle_exit=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
