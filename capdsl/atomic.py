"""Atomic output: a file appears complete or not at all.

Writers produce a temporary file in the destination's directory (same file
system, so the final `os.replace` is an atomic rename) and rename it into
place only on success. An exception, Ctrl-C (KeyboardInterrupt) or SystemExit
removes the temporary file, so a failed or interrupted run never leaves a
partial statement behind for a payment pipeline to pick up.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it into place if the block succeeds.

    The temporary file is created empty (so the name is reserved); a writer
    may overwrite or delete and recreate it (DuckDB's COPY does). If the block
    raises anything, including KeyboardInterrupt, the temporary file is removed
    and `path` is left untouched. `private` keeps the file readable by its
    owner only (0600) instead of the mode `open()` would give it.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not produce {tmp}")
        _fsync(tmp)
        if not private:
            _chmod_like_new_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8",
                 private: bool = False) -> None:
    """Write `data` to `path` atomically (text is encoded as UTF-8, newlines kept as given)."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(path, private=private) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)


def _chmod_like_new_file(path: Path) -> None:
    """mkstemp makes files private (0600); give the output the mode `open()` would."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(path, 0o666 & ~mask)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    """Flush the temporary file to disk so the rename never exposes an empty file after a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
