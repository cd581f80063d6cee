"""Diagnostics: one error hierarchy, one renderer.

Every stage reports problems as `Diagnostic`s (a stable code, a severity,
a primary span, related notes and a hint). A stage collects them and raises
one `CapError` carrying all of them, so authors see every problem at once.
Rendering (human with carets, GNU one-line, JSON) lives only here; the CLI
never formats a message itself.

Code ranges, by stage:
  E00xx  source files (encoding, size)
  E01xx  syntax
  E02xx  names and definitions
  E03xx  types and units
  E04xx  bands, tiers, modifiers and schedules (coverage, overlap)
  E05xx  lines, pools and payout splits
  E06xx  embedded examples
  E07xx  panel inputs (data files)
  E08xx  evaluation (runtime)
  E09xx  backends and the command line
  W....  warnings share the numbering of their stage
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Source:
    """A contract's text and the name it is reported under."""

    text: str
    path: str = "<string>"

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""

    @property
    def line_count(self) -> int:
        return max(1, len(self.text.splitlines()))


@dataclass(frozen=True, slots=True)
class Span:
    """A range in a source: 1-based lines and columns, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def point(line: int, column: int) -> "Span":
        return Span(line, column, line, column + 1)

    def to(self, other: "Span") -> "Span":
        return Span(self.line, self.column, other.end_line, other.end_column)

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


NO_SPAN = Span(1, 1, 1, 1)


@dataclass(frozen=True, slots=True)
class Note:
    """A related location ("earlier band here") or a plain remark."""

    message: str
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    severity: str = "error"  # "error" | "warning"
    hint: str | None = None
    notes: tuple[Note, ...] = ()
    path: str | None = None  # set when the diagnostic is about a file other than the contract

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self, source: Source | None = None) -> dict:
        span = self.span
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path or (source.path if source else None),
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "hint": self.hint,
            "notes": [
                {"message": n.message, "line": n.span.line if n.span else None,
                 "column": n.span.column if n.span else None}
                for n in self.notes
            ],
        }


class CapError(Exception):
    """Raised by any stage with one or more diagnostics (at least one error)."""

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic, source: Source | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        self.source = source
        super().__init__(self.diagnostics[0].message if self.diagnostics else "error")

    @property
    def code(self) -> str:
        return self.diagnostics[0].code

    def render(self, color: bool = False) -> str:
        return render_all(self.diagnostics, self.source, color=color)


class SyntaxError_(CapError):
    """The source does not parse."""


class CheckError(CapError):
    """The contract parses but is wrong (names, types, coverage, splits)."""


class InputError(CapError):
    """A panel file or parameter is unusable."""


class EvalError(CapError):
    """Evaluation failed on the data (a member in no band, a missing value)."""


class BackendError(CapError):
    """A backend cannot compile or run a construct."""


class UsageError(CapError):
    """The command line asked for something impossible."""


def error(code: str, message: str, span: Span | None = None, *, hint: str | None = None,
          notes: Iterable[Note] = (), path: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, span, "error", hint, tuple(notes), path)


def warning(code: str, message: str, span: Span | None = None, *, hint: str | None = None,
            notes: Iterable[Note] = (), path: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, span, "warning", hint, tuple(notes), path)


# ─────────────────────────────── rendering ───────────────────────────────

_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m",
           "bold": "\x1b[1m", "blue": "\x1b[1;34m", "reset": "\x1b[0m"}


def _display_width(text: str) -> int:
    """Columns a string takes in a terminal (wide CJK counts two, combining marks zero)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _caret_line(line_text: str, start_col: int, end_col: int) -> str:
    prefix = line_text[: start_col - 1].replace("\t", "    ")
    underlined = line_text[start_col - 1 : end_col - 1].replace("\t", "    ")
    pad = " " * _display_width(prefix)
    return pad + "^" * max(1, _display_width(underlined))


def render(diag: Diagnostic, source: Source | None, color: bool = False) -> str:
    """Rust/Elm-style: header, the source line, a caret underline, notes, hint."""
    c = _COLORS if color else {k: "" for k in _COLORS}
    path = diag.path or (source.path if source else "capdsl")
    span = diag.span
    location = f"{path}:{span.line}:{span.column}" if span and (diag.path or source) else path
    out = [f"{c['bold']}{location}{c['reset']}: {c[diag.severity]}{diag.severity}[{diag.code}]"
           f"{c['reset']}: {c['bold']}{diag.message}{c['reset']}"]
    if span and source is not None and diag.path is None:
        out.extend(_excerpt(source, span, c))
    for note in diag.notes:
        if note.span and source is not None and diag.path is None:
            out.append(f"  {c['note']}note{c['reset']}: {note.message} ({path}:{note.span.line}:{note.span.column})")
            out.extend(_excerpt(source, note.span, c))
        else:
            out.append(f"  {c['note']}note{c['reset']}: {note.message}")
    if diag.hint:
        out.append(f"  {c['note']}hint{c['reset']}: {diag.hint}")
    return "\n".join(out)


#: A source line longer than LONG_LINE is shown as a window of EXCERPT_WIDTH characters around the
#: error's column, so that a generated contract's 20,000-character line does not flood the terminal
#: with it and its caret; a line a person wrote is shown whole.
LONG_LINE = 400
EXCERPT_WIDTH = 160
_EXCERPT_BEFORE = 60


def _window(text: str, column: int, end_col: int) -> tuple[str, int, int]:
    """The part of a long line around `column` (1-based), with `…` where it is cut, and the columns
    of the span within it."""
    if len(text) <= LONG_LINE:
        return text, column, end_col
    start = max(0, min(column - 1 - _EXCERPT_BEFORE, len(text) - EXCERPT_WIDTH))
    stop = start + EXCERPT_WIDTH
    head = "…" if start > 0 else ""
    tail = "…" if stop < len(text) else ""
    shift = start - len(head)
    return head + text[start:stop] + tail, column - shift, min(end_col, stop + 1) - shift


def _excerpt(source: Source, span: Span, c: dict) -> list[str]:
    text = source.line_text(span.line)
    gutter = " " * len(str(span.line))
    end_col = span.end_column if span.end_line == span.line else len(text) + 1
    end_col = max(end_col, span.column + 1)
    text, column, end_col = _window(text, span.column, end_col)
    end_col = max(end_col, column + 1)
    return [
        f"{c['blue']}{gutter} |{c['reset']}",
        f"{c['blue']}{span.line} |{c['reset']} {text}",
        f"{c['blue']}{gutter} |{c['reset']} {c['error']}{_caret_line(text, column, end_col)}{c['reset']}",
    ]


def render_gnu(diag: Diagnostic, source: Source | None) -> str:
    """One line per diagnostic, the format editors and grep understand."""
    path = diag.path or (source.path if source else "capdsl")
    span = diag.span
    loc = f"{path}:{span.line}:{span.column}" if span and (diag.path or source) else path
    return f"{loc}: {diag.severity}[{diag.code}]: {diag.message}"


def render_all(diags: Iterable[Diagnostic], source: Source | None, color: bool = False) -> str:
    return "\n\n".join(render(d, source, color) for d in diags)


def to_json(diags: Iterable[Diagnostic], source: Source | None) -> str:
    return json.dumps([d.to_dict(source) for d in diags], ensure_ascii=False, indent=2)


def sort_key(diag: Diagnostic) -> tuple:
    span = diag.span or NO_SPAN
    return (span.line, span.column, diag.code)


MAX_SOURCE_BYTES = 2_000_000  # a contract file larger than this is refused (E0003)


def _read_stdin(max_bytes: int) -> bytes:
    """A contract piped in (`-`): read at most one byte more than the limit, so the size check holds."""
    import sys

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(error("E0001", "- reads the contract from standard input, which is a terminal",
                               hint="pipe a contract in: capdsl check - < contract.cap"))
    return sys.stdin.buffer.read(max_bytes + 1)


def load_source(path: str | Path, max_bytes: int = MAX_SOURCE_BYTES) -> Source:
    """Read a contract file (`-`: standard input, reported as <stdin>): UTF-8 only, bounded size,
    with located errors."""
    p = Path(path)
    try:
        data = _read_stdin(max_bytes) if str(path) == "-" else p.read_bytes()
        if str(path) == "-":
            p = Path("<stdin>")
    except FileNotFoundError:
        raise UsageError(error("E0001", f"no such file: {p}", path=str(p))) from None
    except IsADirectoryError:
        raise UsageError(error("E0001", f"{p} is a directory, not a contract file", path=str(p))) from None
    except OSError as exc:
        raise UsageError(error("E0001", f"cannot read {p}: {exc.strerror}", path=str(p))) from None
    if len(data) > max_bytes:
        raise SyntaxError_(error(
            "E0003", f"the file is {len(data):,} bytes; contracts are limited to {max_bytes:,} bytes",
            path=str(p), hint="split the contract or raise the limit with --max-source-bytes"))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        src = Source(data[: exc.start].decode("utf-8", "replace") + "\n", str(p))
        raise SyntaxError_(error(
            "E0002", f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            Span.point(line, col), hint="save the file as UTF-8 (most editors: 'Save with encoding')"),
            src) from None
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        raise SyntaxError_(error("E0002", "the file contains a NUL byte; is it a binary file?",
                                 Span.point(line, col)), Source(text.replace("\x00", " "), str(p)))
    return Source(text, str(p))
