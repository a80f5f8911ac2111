"""Graceful shutdown: on SIGTERM the server stops accepting, lets running
sessions and transfers go on for `server.shutdown_grace`, then closes the
rest with 421 and exits 0."""

import ftplib
import signal
import socket
import time

import pytest


def test_sigterm_lets_a_transfer_finish_then_closes_the_rest(make_server):
    server = make_server('shutdown_grace = "3s"\n')
    uploader = server.ftp()
    idle = server.ftp()
    data = bytes(range(256)) * 4096  # 1 MiB

    conn = uploader.transfercmd("STOR during-shutdown.bin")
    conn.sendall(data[: len(data) // 2])
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_log("shutting down: not accepting")

    # No new connections...
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).recv(1)
    # ...but the running ones go on: the transfer finishes, the idle session works.
    conn.sendall(data[len(data) // 2 :])
    conn.close()
    assert uploader.voidresp().startswith("226")
    assert (server.root / "during-shutdown.bin").read_bytes() == data
    assert idle.sendcmd("NOOP").startswith("200")

    # At the end of the grace period every session left gets 421.
    started = time.monotonic()
    for client in (uploader, idle):
        with pytest.raises(ftplib.error_temp, match="^421 Server shutting down"):
            client.getresp()
    assert time.monotonic() - started < 6
    assert server.proc.wait(timeout=15) == 0


def test_sigterm_exits_at_once_when_no_session_is_open(make_server):
    server = make_server('shutdown_grace = "30s"\n')
    client = server.ftp()
    client.quit()
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
