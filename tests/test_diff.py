"""`capdsl diff`: matching, totals, distribution, drivers, currencies, empty panels, CLI."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from capdsl.tools.impact import diff, nearest_rank, pct
from capdsl.errors import CapError
from capdsl.pipeline import Run
from validation_helpers import BASE, BASE_EUR, compile_text, variant, write, write_panel

D = Decimal


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    return write_panel(tmp_path_factory.mktemp("panel"))


def run_of(panel, period="2011-03", **kw):
    return Run(files=dict(panel), period=period, engine="python", **kw)


def impact_of(old_text, new_text, panel, **kw):
    return diff(compile_text(old_text, "old.cap")[1], compile_text(new_text, "new.cap")[1], run_of(panel), **kw)


def test_identical_contracts_change_nothing(panel):
    imp = impact_of(BASE, BASE, panel)
    assert imp.delta == 0 and imp.old_total == imp.new_total > 0
    assert all(p.delta == 0 for p in imp.practices)
    assert imp.distribution.losing_over_5pct == imp.distribution.gaining_over_5pct == 0
    assert imp.distribution.within_5pct == 3
    assert all(g.delta == 0 for g in imp.drivers.groups)


def test_band_rate_change_is_attributed_to_its_band_exactly(panel):
    new = variant(BASE, ("65 and over: 2.00", "65 and over: 2.20"))
    imp = impact_of(BASE, new, panel)
    cap = next(ln for ln in imp.lines if ln.id == "capitation")
    assert imp.delta == cap.delta > 0
    assert next(ln for ln in imp.lines if ln.id == "services").delta == 0
    bands = {g.group: g.delta for g in imp.drivers.groups if g.dimension == "age band"}
    assert bands["65 and over"] == cap.delta  # linear line: exact, nothing left over
    assert all(v == 0 for k, v in bands.items() if k != "65 and over")
    assert not [u for u in imp.drivers.unattributed if u.delta]
    assert cap.delta_pct == pct(cap.delta, cap.old)


def test_group_contributions_add_up_to_each_line(panel):
    new = variant(BASE, ("1.20 when member.diabetes", "1.50 when member.diabetes"),
                  ("point_value = 1.00", "point_value = 1.10"))
    imp = impact_of(BASE, new, panel)
    total_groups = sum((g.delta for g in imp.drivers.groups if g.dimension == "age band"), D(0))
    total_rest = sum((u.delta for u in imp.drivers.unattributed), D(0))
    assert total_groups + total_rest == imp.delta
    flags = {g.group: g.delta for g in imp.drivers.groups if g.dimension == "diabetes"}
    cap_delta = next(ln.delta for ln in imp.lines if ln.id == "capitation")
    services_delta = next(ln.delta for ln in imp.lines if ln.id == "services")
    # diabetics gain the whole modifier change plus their share of the services change
    assert flags["diabetes"] > 0 and flags["no diabetes"] > 0
    assert flags["diabetes"] + flags["no diabetes"] == cap_delta + services_delta
    assert all(g.member_months > 0 for g in imp.drivers.groups if g.dimension == "diabetes")


def test_new_tier_shows_as_tier_shift_and_practice_gain(panel):
    new = variant(BASE, ("    50 CZK when", "    55 CZK when practice.weekly_hours >= 35 hours\n    50 CZK when"))
    imp = impact_of(BASE, new, panel)
    shifts = [s for s in imp.drivers.tiers if s.table == "base_rate" and s.old_entry != s.new_entry]
    assert len(shifts) == 1 and shifts[0].practices == 1
    assert shifts[0].new_entry == "practice.weekly_hours >= 35 hours"
    assert shifts[0].delta == imp.delta > 0
    gainer = imp.distribution.largest_gainers[0]
    assert gainer.practice_id == "P2" and gainer.delta_pct == D("10.00")  # 55 / 50
    assert imp.distribution.gaining_over_5pct == 1 and imp.distribution.losing_over_5pct == 0


def test_lines_added_and_removed_count_zero_on_the_missing_side(panel):
    new = variant(BASE, ('line services "Services" = sum of event.points * point_value over events\n',
                         'line bonus "Diabetes bonus" = sum of 10 CZK over members where member.diabetes\n'))
    imp = impact_of(BASE, new, panel)
    by_id = {ln.id: ln for ln in imp.lines}
    assert by_id["services"].status == "removed" and by_id["services"].new == 0 and by_id["services"].old > 0
    assert by_id["bonus"].status == "added" and by_id["bonus"].old == 0 and by_id["bonus"].delta_pct is None
    assert by_id["capitation"].status == "both"
    assert imp.delta == sum((ln.delta for ln in imp.lines), D(0))
    p0 = imp.practices[0]
    assert [ln.id for ln in p0.lines] == ["capitation", "bonus", "services"]


def test_currency_mismatch_needs_a_rate(panel):
    eur = BASE_EUR
    with pytest.raises(CapError) as info:
        impact_of(eur, BASE, panel)
    assert info.value.code == "E0910" and "EUR" in str(info.value) and "--rate" in info.value.diagnostics[0].hint
    imp = impact_of(eur, BASE, panel, rate=D("25"))
    assert imp.currency == "CZK" and imp.rate == D("25")
    # 2 EUR × 25 = 50 CZK, 1.80 EUR × 25 = 45 CZK, 0.04 EUR × 25 = 1 CZK per point: the same contract
    assert imp.delta == 0
    with pytest.raises(CapError) as info:
        impact_of(eur, BASE, panel, rate=D("-1"))
    assert info.value.code == "E0910"


def test_rate_with_same_currency_is_a_warning(panel):
    imp = impact_of(BASE, BASE, panel, rate=D("2"))
    assert imp.rate is None and any("ignored" in w for w in imp.warnings)


def test_empty_panel_says_so(tmp_path, panel):
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\n")
    with pytest.raises(CapError) as info:
        impact_of(BASE, BASE, {"members": str(tmp_path / "members.csv")})
    assert info.value.code == "E0911" and "empty" in str(info.value)
    files = dict(panel)
    files.pop("events")
    with pytest.raises(CapError) as info:
        diff(compile_text(BASE)[1], compile_text(BASE)[1],
             Run(files=files, period="1900-01", engine="python"))
    assert info.value.code == "E0911" and "1900-01" in str(info.value)


def test_distribution_statistics():
    assert nearest_rank([D(1), D(2), D(3), D(4)], 50) == D(2)
    assert nearest_rank([D(1), D(2), D(3), D(4)], 100) == D(4)
    assert nearest_rank([D(7)], 0) == D(7)
    assert pct(D(5), D(0)) is None
    assert pct(D(0), D(-3)) == D("0.00") and str(pct(D(0), D(-3))) == "0.00"
    assert pct(D(1), D(3)) == D("33.33")
    assert pct(D(10), D(-100)) == D("10.00")  # a smaller deduction is a gain


def test_no_drivers_is_faster_and_empty(panel):
    imp = impact_of(BASE, BASE, panel, drivers=False)
    assert imp.drivers is None


def test_json_round_trips_with_decimal_strings(panel):
    imp = impact_of(BASE, variant(BASE, ("45 CZK otherwise", "46 CZK otherwise")), panel)
    data = json.loads(imp.model_dump_json())
    assert isinstance(data["delta"], str) and D(data["delta"]) == imp.delta
    assert data["lines"][0]["status"] == "both"


# ─────────────────────────────── CLI ───────────────────────────────────────

@pytest.fixture()
def cli():
    from capdsl.tools.cli import main
    from capdsl.tools.diff_command import register

    register(main)
    register(main)  # idempotent
    return main


def test_cli_diff_json_csv_table_and_report(cli, panel, tmp_path):
    old = write(tmp_path / "old.cap", BASE)
    new = write(tmp_path / "new.cap", variant(BASE, ("65 and over: 2.00", "65 and over: 2.50")))
    common = ["--members", panel["members"], "--practices", panel["practices"], "--events", panel["events"],
              "--period", "2011-03", "--engine", "python"]
    r = CliRunner().invoke(cli, ["diff", old, new, *common, "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert D(data["delta"]) > 0 and data["old"]["path"].endswith("old.cap")
    r = CliRunner().invoke(cli, ["diff", old, new, *common, "--format", "csv", "--no-drivers"])
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("practice_id,line,status,old,new")
    assert len(r.stdout.splitlines()) == 1 + 3 * 3  # 3 practices × (2 lines + total)
    report = tmp_path / "impact.html"
    r = CliRunner().invoke(cli, ["diff", old, new, *common, "--report", str(report), "-o", str(tmp_path / "t.txt")])
    assert r.exit_code == 0, r.output
    assert report.exists() and "<svg" in report.read_text()
    assert "Per line" in (tmp_path / "t.txt").read_text()


def test_cli_diff_currency_error_exit_1(cli, panel, tmp_path):
    old = write(tmp_path / "old.cap", BASE_EUR)
    new = write(tmp_path / "new.cap", BASE)
    r = CliRunner().invoke(cli, ["diff", old, new, "--members", panel["members"], "--practices", panel["practices"],
                                 "--period", "2011-03", "--engine", "python"])
    assert r.exit_code == 1 and "E0910" in r.output
    r = CliRunner().invoke(cli, ["diff", old, new, "--members", panel["members"], "--practices", panel["practices"],
                                 "--period", "2011-03", "--engine", "python", "--rate", "abc"])
    assert r.exit_code == 1 and "E0910" in r.output


def test_duckdb_engine_gives_the_same_impact(panel):
    sql = pytest.importorskip("capdsl.sql")
    if not hasattr(sql, "evaluate"):
        pytest.skip("the DuckDB backend is not installed")
    new = variant(BASE, ("65 and over: 2.00", "65 and over: 2.20"), ("45 CZK otherwise", "44 CZK otherwise"))
    old_p, new_p = compile_text(BASE, "old.cap")[1], compile_text(new, "new.cap")[1]
    py = diff(old_p, new_p, Run(files=dict(panel), period="2011", engine="python"), drivers=False)
    db = diff(old_p, new_p, Run(files=dict(panel), period="2011", engine="duckdb"), drivers=False)
    assert db.engine == "duckdb"
    assert db.model_dump(exclude={"engine"}) == py.model_dump(exclude={"engine"})
