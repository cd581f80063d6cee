"""What the panel's checks found, remembered for input files that have not changed.

Checking a million-member panel (every column's values, duplicated and
unknown ids, orphans, dates) scans it more often than computing its payments
does. A payer runs `eval`, `explain`, `diff` and `test` on the same monthly
extract again and again, so `load_panel` records the answer of every
read-only statement it runs, and a later load of the *same files for the same
contract* replays those answers instead of scanning again. The checks' own
code still runs and reports every error and warning exactly as before: only
the SQL answers are remembered, never a verdict.

"The same files" is decided the way git decides a file is unchanged without
reading it: its device, inode, size, modification and status-change times
(`st_ctime` cannot be set back by any user command; every write moves it).
Two guards close the gaps:

- a file whose times are less than `SETTLE_NS` before the load began is never
  remembered (it may still be being written, in the same clock tick: git's
  "racy" entries);
- the files are looked at again after the checks finish, and nothing is
  remembered if any changed meanwhile.

An entry also depends on the contract's requirements, the reference dates,
the DuckDB version and capdsl's code. Only loads that find no error are
remembered. Entries are `panel-…` entries of the signed store (capdsl/store.py:
the compiled-contract cache's directory, trust rules and `CAPDSL_NO_CACHE=1`
switch); they hold plain values only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from capdsl import store

# how long a file must have been left alone before its checks' answers are kept
SETTLE_NS = 2_000_000_000
_READS = ("SELECT", "WITH", "DESCRIBE")


def _identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Memo:
    """The answers recorded for one load: replayed when the entry existed, stored by `keep()`."""

    def __init__(self, entry: str | None, files: dict[str, tuple[Path, tuple]], answers: dict[str, list],
                 started_ns: int) -> None:
        self.entry = entry
        self.files = files
        self.answers = answers
        self.replayed = bool(answers)
        self.started_ns = started_ns

    @classmethod
    def open(cls, paths: dict[str, Path], context: Sequence[Any]) -> Memo:
        """The memo for loading `paths` (table -> file) with everything else the checks depend on
        (`context`: formats, requirements, dates, options). Off (entry None) when the cache is off
        or a file cannot be looked at (the load reports that)."""
        started = time.time_ns()
        files = {t: (p, _identity(p)) for t, p in sorted(paths.items())}
        if store.directory() is None or any(ident is None for _, ident in files.values()):
            return cls(None, files, {}, started)
        import duckdb

        data = json.dumps([duckdb.__version__, [[t, str(p), os.path.realpath(p), list(ident)]
                                               for t, (p, ident) in files.items()], repr(list(context))])
        entry = store.entry_key("panel", data.encode("utf-8", "surrogateescape"))
        found = store.load(entry)
        answers = found if isinstance(found, dict) else {}
        return cls(entry, files, answers, started)

    def connection(self, con) -> _Remembering:
        return _Remembering(con, self)

    def keep(self) -> None:
        """Store the answers if every file was settled before the load and is unchanged after it."""
        if self.entry is None or self.replayed or not self.answers:
            return
        for path, ident in self.files.values():
            if _identity(path) != ident or max(ident[3], ident[4]) > self.started_ns - SETTLE_NS:
                return
        store.save(self.entry, self.answers)


class _Answer:
    def __init__(self, rows: list) -> None:
        self.rows = rows

    def fetchall(self) -> list:
        return list(self.rows)


class _Remembering:
    """A DuckDB connection (or cursor) whose read-only statements are answered from the memo,
    or run and recorded. Everything else passes through."""

    def __init__(self, con, memo: Memo) -> None:
        self._con = con
        self._memo = memo

    def execute(self, sql: str, params: Sequence[Any] | None = None):
        params = list(params or [])
        if not sql.lstrip()[:8].upper().startswith(_READS):
            return self._con.execute(sql, params)
        key = sql + "\0" + repr(params)
        answers = self._memo.answers
        if key not in answers:
            answers[key] = [tuple(r) for r in self._con.execute(sql, params).fetchall()]
        return _Answer(answers[key])

    def cursor(self) -> _Remembering:
        return _Remembering(self._con.cursor(), self._memo)

    def __getattr__(self, name: str):
        return getattr(self._con, name)
