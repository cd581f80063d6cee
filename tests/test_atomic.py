"""Atomic output: complete files or none, even on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from capdsl.outputs import atomic_path, atomic_write


def leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_text_and_bytes(tmp_path):
    target = tmp_path / "out.json"
    atomic_write(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_mode_is_like_a_normal_new_file(tmp_path):
    target = tmp_path / "out.csv"
    atomic_write(target, "x")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(1)])
def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, exc):
    target = tmp_path / "statement.csv"
    target.write_text("old")
    with pytest.raises(type(exc)):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path
            tmp.write_text("half")
            raise exc
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_failure_without_old_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.parquet"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PAR1")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_writer_may_replace_the_temp_file(tmp_path):
    target = tmp_path / "x.csv"
    with atomic_path(target) as tmp:
        os.unlink(tmp)
        tmp.write_text("recreated")
    assert target.read_text() == "recreated"


def test_relative_path_in_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write("rel.txt", "ok")
    assert (tmp_path / "rel.txt").read_text() == "ok"


def test_sigint_during_write_leaves_no_file(tmp_path):
    """A real Ctrl-C (SIGINT) while writing: no output and no temp file remain."""
    target = tmp_path / "out.csv"
    # Python's own Ctrl-C handler even when the suite was started in the background, where the shell
    # hands every child SIGINT ignored (found running `make test &`)
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from capdsl.outputs import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("partial")
            print("ready", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []
