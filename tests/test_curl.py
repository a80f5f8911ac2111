"""End to end with curl: download, upload, listings, active mode, resume and
--ftp-create-dirs."""

import os
import subprocess

import pytest


def curl(*args, check=True):
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "60", *args],
        capture_output=True,
        timeout=90,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
    return result


def test_download_and_upload(server, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 3)
    (server.root / "down.bin").write_bytes(data)
    out = tmp_path / "down.bin"
    curl(server.url("down.bin"), "-o", str(out))
    assert out.read_bytes() == data

    up = tmp_path / "up.bin"
    up.write_bytes(data[::-1])
    curl("-T", str(up), server.url("/"))
    assert (server.root / "up.bin").read_bytes() == data[::-1]


def test_download_with_pasv_instead_of_epsv(server, tmp_path):
    (server.root / "p.txt").write_bytes(b"pasv works\n")
    out = curl("--disable-epsv", server.url("p.txt")).stdout
    assert out == b"pasv works\n"


def test_directory_listing(server):
    (server.root / "a.txt").write_text("a")
    (server.root / "sub").mkdir()
    listing = curl(server.url("/")).stdout.decode()
    lines = listing.splitlines()
    assert any(l.startswith("-") and l.endswith(" a.txt") for l in lines), listing
    assert any(l.startswith("d") and l.endswith(" sub") for l in lines), listing
    names = curl("--list-only", server.url("/")).stdout.decode().split()
    assert sorted(names) == ["a.txt", "sub"]


def test_active_mode(server, tmp_path):
    data = os.urandom(500_000)
    (server.root / "act.bin").write_bytes(data)
    out = tmp_path / "act.bin"
    curl("-P", "127.0.0.1", server.url("act.bin"), "-o", str(out))
    assert out.read_bytes() == data
    up = tmp_path / "act-up.bin"
    up.write_bytes(data[:1000])
    curl("-P", "127.0.0.1", "--disable-eprt", "-T", str(up), server.url("/"))
    assert (server.root / "act-up.bin").read_bytes() == data[:1000]


def test_resume_download_and_upload(server, tmp_path):
    data = os.urandom(1_500_000)
    (server.root / "resume.bin").write_bytes(data)
    partial = tmp_path / "resume.bin"
    partial.write_bytes(data[:600_000])
    curl("-C", "-", server.url("resume.bin"), "-o", str(partial))
    assert partial.read_bytes() == data

    # Upload resume: the server has the first part, curl sends the rest.
    (server.root / "up-resume.bin").write_bytes(data[:700_000])
    local = tmp_path / "up-resume.bin"
    local.write_bytes(data)
    curl("-C", "-", "-T", str(local), server.url("up-resume.bin"))
    assert (server.root / "up-resume.bin").read_bytes() == data


def test_create_dirs_on_upload(server, tmp_path):
    f = tmp_path / "deep.txt"
    f.write_text("deep")
    curl("--ftp-create-dirs", "-T", str(f), server.url("a/b/c/deep.txt"))
    assert (server.root / "a" / "b" / "c" / "deep.txt").read_text() == "deep"


def test_missing_file_is_an_error(server):
    result = curl(server.url("nope.bin"), check=False)
    assert result.returncode == 78, result  # curl: remote file not found (550)


def test_wrong_password_fails(server):
    result = curl(server.url("x", password="bad"), check=False)
    assert result.returncode == 67, result  # curl: login denied (530)
