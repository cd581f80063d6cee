"""Dated terms: a value that changes on a date is used in its months, and `diff`
compares before/after within one contract (--new-period) or two settings (--new-set)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from click.testing import CliRunner

from capdsl.tools.impact import diff
from capdsl.errors import CapError
from capdsl.evaluation.interpret import Rows, evaluate
from capdsl.pipeline import Run
from capdsl.evaluation.statements import build
from validation_helpers import compile_text, write, write_panel

D = Decimal

DATED = """
contract "Dated GP 2011":
    currency CZK
end

inputs:
    event points: points = 0 points
    param bonus_rate: CZK = 0 CZK
end

define rate:
    40 CZK from 2011-01-01
    45 CZK from 2011-07-01
end

define point_value:
    1.00 CZK per point from 2011-01-01
    1.08 CZK per point from 2011-07-01
end

line capitation "Capitation" = sum of rate over members
line services "Services" = sum of event.points * point_value over events
line bonus "Bonus" = sum of bonus_rate over members
"""

YEAR = tuple(date(2011, m, 1) for m in range(1, 13))


def members(n: int, pid: str = "P1"):
    return [{"member_id": f"M{i}", "practice_id": pid, "birth_date": date(1970, 1, 1), "enrolled_from": None,
             "enrolled_to": None, "_row": i + 1, "_label": f"M{i}"} for i in range(n)]


def events_each_month(pid: str = "P1"):
    return [{"practice_id": pid, "member_id": None, "date": date(2011, m, 15), "code": "X", "quantity": D(1),
             "points": D(100), "_row": m} for m in range(1, 13)]


def test_each_month_uses_the_rate_in_force():
    program = compile_text(DATED)[1]
    monthly = evaluate(program, Rows([], members(10), events_each_month()), YEAR, {"bonus_rate": D(0)})
    cap = {m.month: amount for pid, m, name, amount, _a, _b in monthly.rows if name == "capitation"}
    fee = {m.month: amount for pid, m, name, amount, _a, _b in monthly.rows if name == "services"}
    assert [cap[m] for m in range(1, 13)] == [D("400.00")] * 6 + [D("450.00")] * 6
    assert [fee[m] for m in range(1, 13)] == [D("100.00")] * 6 + [D("108.00")] * 6
    result = build(program, monthly, "2011", YEAR, "python")
    lines = {ln.id: ln.amount for ln in result.statements[0].lines}
    assert lines["capitation"] == D("5100.00")  # 6 × 400 + 6 × 450
    assert lines["services"] == D("1248.00")  # 6 × 100 + 6 × 108
    q3 = tuple(date(2011, m, 1) for m in (6, 7))
    split = build(program, evaluate(program, Rows([], members(10)), q3, {"bonus_rate": D(0)}), "x", q3, "python")
    assert split.statements[0].lines[0].amount == D("850.00")


def test_a_month_before_the_first_date_is_an_error():
    program = compile_text(DATED)[1]
    with pytest.raises(CapError) as info:
        evaluate(program, Rows([], members(1)), (date(2010, 12, 1),), {"bonus_rate": D(0)})
    assert info.value.code == "E0805" and "2011-01-01" in str(info.value)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    return write_panel(tmp_path_factory.mktemp("dated"), members=30)


def test_diff_before_and_after_within_one_contract(panel):
    program = compile_text(DATED, "dated.cap")[1]
    before = Run(files={"members": panel["members"]}, period="2011-06", engine="python")
    after = Run(files={"members": panel["members"]}, period="2011-07", engine="python")
    imp = diff(program, program, before, after)
    assert imp.old.period == "2011-06" and imp.new.period == "2011-07"
    by_id = {ln.id: ln for ln in imp.lines}
    assert by_id["capitation"].delta == 30 * D(5) and by_id["capitation"].delta_pct == D("12.50")
    shifts = {(s.table, s.old_entry, s.new_entry) for s in imp.drivers.tiers}
    assert ("rate", "from 2011-01-01", "from 2011-07-01") in shifts
    assert ("point_value", "from 2011-01-01", "from 2011-07-01") in shifts


def test_diff_of_parameter_settings(panel):
    program = compile_text(DATED, "dated.cap")[1]
    old = Run(files={"members": panel["members"]}, period="2011-03", engine="python")
    new = Run(files={"members": panel["members"]}, period="2011-03", engine="python",
              assignments=("bonus_rate=2",))
    imp = diff(program, program, old, new)
    assert {ln.id: ln.delta for ln in imp.lines} == {"capitation": 0, "services": 0, "bonus": D("60.00")}
    assert imp.new.settings == ["bonus_rate=2"] and imp.old.settings == []


def test_cli_new_period_and_new_set(panel, tmp_path):
    from capdsl.tools.cli import main
    from capdsl.tools.diff_command import register

    register(main)
    path = write(tmp_path / "dated.cap", DATED)
    base = ["diff", path, path, "--members", panel["members"], "--engine", "python", "--format", "json"]
    r = CliRunner().invoke(main, base + ["--period", "2011-06", "--new-period", "2011-07"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["old"]["period"] == "2011-06" and data["new"]["period"] == "2011-07"
    assert D(data["delta"]) == D("150.00")
    r = CliRunner().invoke(main, base + ["--period", "2011", "--new-set", "bonus_rate=1", "--no-drivers"])
    assert r.exit_code == 0, r.output
    assert D(json.loads(r.stdout)["delta"]) == D(30 * 12)
