"""The panel-check memo (capdsl/data/memo.py): a second load of unchanged files replays the
checks' answers instead of scanning, and reports exactly what a first load reports; a changed,
fresh or failing file is never replayed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_panel import BAD, M_HEAD, TODAY, WARNED, panel_files, requirements

from capdsl.data import memo as panel_memo
from capdsl.errors import InputError
from capdsl.data.panel import load_panel


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    where = tmp_path / "cache"
    monkeypatch.setenv("CAPDSL_CACHE_DIR", str(where))
    monkeypatch.delenv("CAPDSL_NO_CACHE", raising=False)
    return where


@pytest.fixture
def settled(monkeypatch, cache_dir):
    """Files written by the test count as settled at once (the real wait is two seconds)."""
    monkeypatch.setattr(panel_memo, "SETTLE_NS", 0)
    return cache_dir


@pytest.fixture
def scans(monkeypatch):
    """The read-only statements that reach DuckDB (not answered from the memo)."""
    seen: list[str] = []

    class Counting:
        def __init__(self, con):
            self._con = con

        def execute(self, sql, params=None):
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                seen.append(sql)
            return self._con.execute(sql, params or [])

        def cursor(self):
            return Counting(self._con.cursor())

        def __getattr__(self, name):
            return getattr(self._con, name)

    real = panel_memo.Memo.connection
    monkeypatch.setattr(panel_memo.Memo, "connection", lambda self, con: real(self, Counting(con)))
    return seen


def entries(where: Path) -> list[str]:
    return sorted(p.name for p in where.glob("panel-*.json")) if where.exists() else []


def outcome(files, background=False, **kw):
    try:
        p = load_panel(files, requirements(), today=TODAY, checks_in_background=background, **kw)
        p.finish_checks()
    except InputError as exc:
        return "error", [(d.code, d.message) for d in exc.diagnostics], None
    rows = p.member_rows(["member_id", "practice_id", "birth_date"]), p.practice_rows(["practice_id", "weekly_hours"])
    warnings = [(d.code, d.message) for d in p.warnings]
    replayed = p.memo.replayed
    p.close()
    return "ok", warnings, (rows, replayed)


@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_a_second_load_of_unchanged_files_scans_nothing(tmp_path, settled, scans, background):
    files = panel_files(tmp_path)
    first = outcome(files, background)
    assert first[0] == "ok" and scans, "the first load runs its checks"
    assert len(entries(settled)) == 1
    scans.clear()
    second = outcome(files, background)
    assert scans == [], "every check was answered from the memo"
    assert second[2][1] is True and first[2][1] is False
    assert second[:2] == first[:2] and second[2][0] == first[2][0]


@pytest.mark.parametrize("case", WARNED, ids=lambda c: c[0])
def test_warnings_are_reported_again_from_the_memo(tmp_path, settled, case):
    _, override = case
    files = panel_files(tmp_path, **override)
    first = outcome(files, background=True)
    second = outcome(files, background=True)
    assert first[1], "the case warns (or fails)"
    assert second[:2] == first[:2]
    if first[0] == "ok":
        assert second[2][1] is True


@pytest.mark.parametrize("case", BAD, ids=lambda c: c[0])
def test_a_load_that_finds_errors_is_never_remembered(tmp_path, settled, case):
    _name, table, override, *_ = case
    files = panel_files(tmp_path, **{table: override})
    first = outcome(files, background=True)
    assert first[0] == "error"
    assert entries(settled) == []
    assert outcome(files, background=True) == first


def test_a_changed_file_is_checked_again(tmp_path, settled):
    files = panel_files(tmp_path)
    assert outcome(files)[0] == "ok"
    # the same panel with member M2 twice: a different size, so a different identity
    text = files["members"].read_text()
    files["members"].write_text(text + text.splitlines()[2] + "\n")
    status, diags, _ = outcome(files)
    assert status == "error" and "E0706" in [c for c, _ in diags]


def test_a_file_changed_in_the_same_instant_is_caught_by_its_status_time(tmp_path, settled):
    """Same size and modification time (as `touch -d` or a careful copy can leave them): the
    status-change time still differs, which no user command can set back."""
    files = panel_files(tmp_path)
    assert outcome(files)[0] == "ok"
    path = files["members"]
    before = os.stat(path)
    text = path.read_text()
    swapped = text.replace("M1,", "M2,", 1)  # M2 now twice, same length
    assert len(swapped) == len(text) and swapped != text
    time.sleep(0.01)
    path.write_text(swapped)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert "E0706" in [c for c, _ in outcome(files)[1]]


def test_files_written_just_now_are_not_remembered(tmp_path, cache_dir):
    """A file whose times are within SETTLE_NS of the load may still be being written (git's
    racy entries): its answers are not kept."""
    files = panel_files(tmp_path)
    assert outcome(files)[0] == "ok"
    assert entries(cache_dir) == []


def test_a_file_changed_while_the_checks_ran_is_not_remembered(tmp_path, settled):
    files = panel_files(tmp_path)
    p = load_panel(files, requirements(), today=TODAY, checks_in_background=True)
    files["events"].write_text(files["events"].read_text() + "\n")
    p.finish_checks()
    p.close()
    assert entries(settled) == []


def test_another_contract_or_day_is_another_entry(tmp_path, settled):
    files = panel_files(tmp_path)
    outcome(files)
    req = requirements()
    req.members.clear()
    load_panel(files, req, today=TODAY).close()
    load_panel(files, requirements(), today=TODAY.replace(day=2)).close()
    assert len(entries(settled)) == 3


def test_the_cache_switch_turns_the_memo_off(tmp_path, settled, monkeypatch, scans):
    monkeypatch.setenv("CAPDSL_NO_CACHE", "1")
    files = panel_files(tmp_path)
    outcome(files)
    assert entries(settled) == []
    scans.clear()
    assert outcome(files)[2][1] is False and scans


def test_a_damaged_entry_is_a_miss(tmp_path, settled):
    files = panel_files(tmp_path)
    first = outcome(files)
    (entry,) = settled.glob("panel-*.json")
    entry.write_bytes(entry.read_bytes()[:-20])
    second = outcome(files)
    assert second[2][1] is False and second[:2] == first[:2]


def test_an_edited_answer_is_never_replayed(tmp_path, settled):
    """An entry whose answers were edited (here the count of members aged 110, set to 0, which
    would hide the warning) does not match its digest: the panel is checked again and warns."""
    import re

    files = panel_files(tmp_path, **dict(WARNED)["aged 110"])
    first = outcome(files)
    assert first[0] == "ok" and "aged 110" in first[1][0][1]
    (entry,) = settled.glob("panel-*.json")
    data, n = re.subn(rb'(birth_date <= \?\\u0000\[[^\]]*\]",\{"L":\[\{"T":\[)1\]', rb"\g<1>0]", entry.read_bytes())
    assert n == 1
    entry.write_bytes(data)
    second = outcome(files)
    assert second[2][1] is False and second[:2] == first[:2]


def test_a_duplicate_found_only_by_the_memo_key_is_still_reported(tmp_path, settled):
    """The replayed answers come from the file they were recorded for: a *new* file with the same
    path but other content is checked afresh (here it adds a duplicated member)."""
    files = panel_files(tmp_path)
    outcome(files)
    files["members"].unlink()
    files["members"].write_text(M_HEAD + "M1,P1,1950-01-01,,,,\nM1,P2,1960-01-01,,,,\n")
    status, diags, _ = outcome(files)
    assert status == "error" and "E0706" in [c for c, _ in diags]


def test_a_replayed_load_builds_the_same_typed_tables(tmp_path, settled):
    """A replay types columns without the tests the first load's checks passed (validity, trimming):
    the typed tables must be the same, for tidy columns, untidy ones and quoted empty values alike."""
    members = (M_HEAD + 'M1,P1,1950-01-01,"",2011-01-01,,yes\n M2 ,P1, 1960-02-03 ,F,,,0\n'
               "M3,P1,1970-03-04,M,,,\n")
    files = panel_files(tmp_path, members=(".csv", members))

    def tables():
        p = load_panel(files, requirements(), today=TODAY)
        found = {t: p.con.execute(f"SELECT * FROM {t} ORDER BY _row").fetchall()
                 for t in ("members", "practices", "events")}
        replayed = p.memo.replayed
        p.close()
        return found, replayed

    first, replayed_first = tables()
    second, replayed_second = tables()
    assert not replayed_first and replayed_second
    assert second == first
    sexes = [r[4] for r in first["members"]]
    assert sexes == [None, "F", "M"] and first["members"][1][1] == "M2"  # "" is NULL; " M2 " is trimmed
