"""Output files: complete or absent, and never a device, a FIFO or a link replaced.

Where an output goes decides how it is written:

- a regular file (or a new one) is written to a temporary file in its folder
  (same file system, so the final `os.replace` is an atomic rename) and
  renamed into place only on success;
- a symlink is followed: its target is replaced that way, the link stays;
- anything else that exists — `/dev/null`, a FIFO, a terminal — is written
  through: the bytes are produced into a private temporary file first (so a
  failed run writes nothing to it), then copied in;
- `-` is standard output, written through the same way;
- a folder, a socket, a missing folder or one that cannot be written is a
  usage error (E0930), and `check_output` finds it before a command does any
  work.

An exception, Ctrl-C (KeyboardInterrupt) or SystemExit removes the
temporary file, so a failed or interrupted run never leaves a partial
statement behind for a payment pipeline to pick up.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from capdsl.errors import UsageError, error

STDOUT = "-"


@dataclass(frozen=True, slots=True)
class Target:
    """Where an output goes. `path` is the file finally written (a symlink's target), None for stdout.

    `kind`: stdout | new (no file yet) | regular | special (written through)."""

    given: str
    path: Path | None
    kind: Literal["stdout", "new", "regular", "special"]

    @property
    def suffix(self) -> str:
        """The extension the user wrote (`.csv`), which names the format; '' for stdout and devices."""
        return "" if self.kind in ("stdout", "special") else Path(self.given).suffix.lower()


def _bad(given: str, option: str, why: str, hint: str) -> UsageError:
    return UsageError(error("E0930", f"cannot write {option} {given}: {why}", hint=hint))


def check_output(given: str | os.PathLike, option: str = "-o") -> Target:
    """Where `given` leads, or a usage error now (before any work) if nothing can be written there."""
    text = os.fspath(given)
    if text == STDOUT:
        return Target(text, None, "stdout")
    if not text:
        raise _bad("''", option, "the file name is empty", "give a file name, or - for standard output")
    real = Path(os.path.realpath(text))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        blocking = next((p for p in real.parents if p.exists() and not p.is_dir()), real.parent)
        raise _bad(text, option, f"{blocking} is not a folder", "give a path inside a folder") from None
    except OSError as exc:  # a symlink loop, a name too long
        raise _bad(text, option, exc.strerror or str(exc), "give a plain file name") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise _bad(text, option, "it is a folder", f"name a file in it, e.g. {option} "
                                                         f"{os.path.join(text, 'statements.csv')}")
        if stat.S_ISSOCK(st.st_mode):
            raise _bad(text, option, "it is a socket", "write to a file or a pipe")
        if not stat.S_ISREG(st.st_mode):
            if not os.access(real, os.W_OK):
                raise _bad(text, option, "permission denied", "write somewhere you may write")
            return Target(text, real, "special")
    folder = real.parent
    if not folder.exists():
        raise _bad(text, option, f"the folder {folder} does not exist",
                   f"create it first (mkdir -p {folder}) or write elsewhere")
    if not folder.is_dir():
        raise _bad(text, option, f"{folder} is not a folder", "give a path inside a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _bad(text, option, f"no permission to create files in {folder}", "write somewhere you may write")
    return Target(text, real, "regular" if st is not None else "new")


def output_format(output: str | None, chosen: str | None, by_extension: dict[str, str], default: str,
                  option: str = "-o"):
    """The checked output target (None: standard output) and the format: `--format` if given, else the
    file's extension, else (stdout, a device, a FIFO) `default`. An unknown extension is an error, so
    `-o statements.csv` never receives a terminal table. Called before a command does any work."""
    target = check_output(output, option) if output else None
    if chosen:
        return target, chosen
    if target is None or target.kind in ("stdout", "special"):
        return target, default
    found = by_extension.get(target.suffix)
    if found is None:
        names = ", ".join(sorted(by_extension))
        what = f"its extension {target.suffix!r}" if target.suffix else "a name without an extension"
        raise UsageError(error("E0906", f"cannot tell the format of {option} {output} from {what}",
                               hint=f"name the file {names}, or pass --format"))
    return target, found


@contextmanager
def atomic_path(path: str | os.PathLike, *, private: bool = False, option: str = "-o") -> Iterator[Path]:
    """Yield a temporary path for the writer; on success, put its content where `path` leads.

    The temporary file is created empty (so the name is reserved); a writer may overwrite or delete
    and recreate it (DuckDB's COPY does). If the block raises anything, including KeyboardInterrupt,
    the temporary file is removed and the destination is left untouched. `private` keeps a new file
    readable by its owner only (0600); otherwise a replaced file keeps its mode and a new one gets
    the mode `open()` would give it.
    """
    target = check_output(path, option)
    through = target.kind in ("stdout", "special")
    directory = None if through else target.path.parent
    name = "stdout" if target.path is None else target.path.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not produce {tmp}")
        if through:
            _copy_through(tmp, target)
            tmp.unlink()
            return
        _fsync(tmp)
        if not private:
            _chmod_like(tmp, target)
        os.replace(tmp, target.path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in _FULL_OR_DENIED:
            raise _bad(os.fspath(path), option, exc.strerror or str(exc),
                       "free some space or write somewhere else") from None
        raise


# write failures that are about the destination, not a bug: reported as E0930
_FULL_OR_DENIED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENXIO}


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8",
                 private: bool = False, option: str = "-o") -> None:
    """Write `data` where `path` leads, atomically (text is encoded as UTF-8, newlines kept as given)."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(path, private=private, option=option) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)


def _copy_through(tmp: Path, target: Target) -> None:
    """Copy a finished output into standard output or a device/FIFO, never replacing it."""
    with open(tmp, "rb") as src:
        if target.kind == "stdout":
            sys.stdout.flush()
            shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with open(target.path, "wb") as dst:  # a FIFO blocks here until a reader opens it
            shutil.copyfileobj(src, dst)


def _chmod_like(tmp: Path, target: Target) -> None:
    """mkstemp makes files private (0600): give the output the replaced file's mode, or a new file's."""
    try:
        if target.kind == "regular":
            os.chmod(tmp, stat.S_IMODE(os.stat(target.path).st_mode))
            return
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
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


def stdout_console(**options):
    """A rich Console on standard output whose closed pipe (`capdsl … | head`) raises BrokenPipeError,
    which the CLI turns into a quiet exit 141, as for any other output; rich's own handling exits
    with 1, which reads as a failure."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(**options)
