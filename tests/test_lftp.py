"""End to end with lftp: mirror a tree of many small files and a few-MiB file
down from the server and back up, contents verified."""

import filecmp
import os
import subprocess


def lftp(server, script):
    settings = (
        "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 20; "
        "set net:reconnect-interval-base 1; set cmd:fail-exit yes; "
    )
    result = subprocess.run(
        ["lftp", "-u", "demo,demo", "-p", str(server.port), "-e", settings + script + "; quit", server.host],
        capture_output=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return result.stdout.decode()


def make_tree(root, files=150):
    for i in range(files):
        d = root / f"d{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file {i}.txt").write_bytes(os.urandom(i * 37 % 5000))
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 11))
    (root / "empty-dir").mkdir(exist_ok=True)


def assert_same_tree(a, b):
    cmp = filecmp.dircmp(a, b)

    def walk(c):
        assert not c.left_only and not c.right_only, (c.left, c.left_only, c.right_only)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, (mismatch, errors)
        for sub in c.subdirs.values():
            walk(sub)

    walk(cmp)


def test_mirror_download(server, tmp_path):
    make_tree(server.root)
    local = tmp_path / "mirror"
    lftp(server, f"mirror --parallel=2 / {local}")
    assert_same_tree(server.root, local)


def test_mirror_upload(server, tmp_path):
    local = tmp_path / "upload"
    local.mkdir()
    make_tree(local, files=80)
    lftp(server, f"mkdir up; mirror -R {local} /up")
    assert_same_tree(local, server.root / "up")


def test_lftp_listing_parses(server):
    (server.root / "x.txt").write_text("x")
    out = lftp(server, "cls -l /")
    assert "x.txt" in out
