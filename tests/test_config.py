"""`wasmftpd check` on every example, and config errors that name the file,
the line and the key."""

import subprocess
from pathlib import Path

import pytest

from conftest import BINARY, CACHE, REPO


def check(path):
    return subprocess.run(
        [str(BINARY), "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"XDG_CACHE_HOME": str(CACHE), "PATH": "/usr/bin:/bin"},
    )


EXAMPLES = sorted(
    [p for p in (REPO / "examples").glob("*.toml")]
    + [p for p in (REPO / "examples").iterdir() if p.is_dir() and (p / "server.toml").exists()]
)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_check(example):
    result = check(example)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_there_are_examples():
    assert any(p.name == "quickstart.toml" for p in EXAMPLES)
    assert any(p.is_dir() for p in EXAMPLES)


def test_bogus_key_names_file_line_and_key(tmp_path):
    text = (REPO / "examples" / "quickstart.toml").read_text()
    text = text.replace("[site.quickstart.storage]\n", "[site.quickstart.storage]\nbogus_key = 1\n")
    text = text.replace('"quickstart-root"', str(REPO / "examples" / "quickstart-root").join('""'))
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    line = text.splitlines().index("bogus_key = 1") + 1
    result = check(bad)
    assert result.returncode != 0
    assert f"{bad}:{line}: key `site.quickstart.storage.bogus_key`" in result.stderr, result.stderr


def test_error_in_a_site_file_names_it(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "one.toml").write_text('[auth]\nplugin = "builtin:auth-static"\n[storage]\nplugin = "builtin:nope"\n')
    result = check(conf)
    assert result.returncode != 0
    assert f"{conf / 'one.toml'}:4: key `storage.plugin`" in result.stderr, result.stderr
