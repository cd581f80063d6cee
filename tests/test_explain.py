"""`capdsl explain`: the audit trail survives a file or a pipe (whole rule bodies, -o written
atomically), names every parameter read and where it came from, each named value and measure row
per month, without duplicated or stray rows; for a pool the year's sums month by month, the tier
matched and each installment paid or withheld and why; the JSON carries the same; birth dates and
panel member ids only with --show-ids. Goldens in tests/golden/explain/ (CAPDSL_UPDATE_GOLDENS=1
rewrites them)."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.errors import Source
from capdsl.evaluation.months import visible_measure, visible_period
from capdsl.pipeline import Run, compile_file, compile_source
from capdsl.tools.cli import main
from capdsl.tools.explain import explain, render_json, render_text

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "explain"
VZP = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
PMPM = ROOT / "contracts" / "us_pmpm.cap"
SECRET, SECRET_BIRTH = "M_SECRET_4711", "1977-07-17"

PANEL = {
    "members": "member_id,practice_id,birth_date\n"
               "M1,P1,1961-02-10\nM2,P1,1961-05-05\nM3,P1,1940-01-01\n"
               f"{SECRET},P1,{SECRET_BIRTH}\nM6,P1,2011-02-15\nM7,P2,1980-01-01\nM8,P2,1950-06-30\n",
    "practices": "practice_id,weekly_hours,late_days,booking_days,akord,small_practice\n"
                 "P1,32,1,2,true,false\nP2,26,0,0,false,true\n",
    "events": "practice_id,member_id,date,code,points,quantity\n"
              "P1,M1,2011-03-10,PREV_ADULT,350,1\nP1,M2,2011-03-12,VACC,70,2\nP1,,2011-02-03,VACC,70,1\n",
    "measures": "practice_id,period,measure,value\n"
                "P1,2011,drug_cost_per_insured,290.00\nP1,2011-03,drug_cost_per_insured,335.50\n"
                "P1,2011,akord_quality_met,false\nP2,2011,insurer_share,75%\n",
}


@pytest.fixture
def panel(tmp_path) -> list[str]:
    args = ["--no-project"]
    for table, text in PANEL.items():
        (tmp_path / f"{table}.csv").write_text(text, encoding="utf-8")
        args += [f"--{table}", str(tmp_path / f"{table}.csv")]
    return args


def files(tmp_path) -> dict:
    for table, text in PANEL.items():
        (tmp_path / f"{table}.csv").write_text(text, encoding="utf-8")
    return {table: str(tmp_path / f"{table}.csv") for table in PANEL}


def cli(*args, env=None):
    """The command as a user runs it into a pipe: COLUMNS unset unless the test sets it (pytest-xdist
    sets it in its workers)."""
    return CliRunner(env={"COLUMNS": "", **(env or {})}).invoke(main, [str(a) for a in args],
                                                               catch_exceptions=False)


def trail(panel, *args, contract=VZP):
    result = cli("explain", contract, *panel, "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def line_of(e: dict, name: str) -> dict:
    return next(x for x in e["lines"] if x["id"] == name)


# ─────────────────────────────── a file, a pipe ───────────────────────────────

def test_off_a_terminal_every_rule_is_shown_whole(panel):
    """CliRunner's stdout is not a terminal: each rule is its whole source block, numbered, no colour."""
    result = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out
    source = VZP.read_text(encoding="utf-8").splitlines()
    first = next(i for i, text in enumerate(source, 1) if text.startswith("line drug_regulation"))
    for number in range(first, first + 6):  # line … amount … applies … basis … ref … end
        assert f"{number} │ {source[number - 1]}".rstrip() in out, source[number - 1]


def test_o_writes_the_same_text_atomically(panel, tmp_path):
    shown = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1")
    target = tmp_path / "out" / "P1.txt"
    target.parent.mkdir()
    written = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "-o", target)
    assert written.exit_code == 0 and written.stdout == ""
    assert target.read_text(encoding="utf-8") == shown.stdout
    assert [p.name for p in target.parent.iterdir()] == ["P1.txt"]  # no temporary file left
    as_json = tmp_path / "P1.json"
    assert cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "-o", as_json).exit_code == 0
    assert json.loads(as_json.read_text(encoding="utf-8"))["practice_id"] == "P1"  # the format from .json
    unknown = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "-o", tmp_path / "P1.log")
    assert unknown.exit_code == 1 and "E0906" in unknown.stderr and not (tmp_path / "P1.log").exists()
    forced = tmp_path / "P1-text.json"
    cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "--format", "text", "-o", forced)
    assert forced.read_text(encoding="utf-8") == shown.stdout
    dash = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "-o", "-")
    assert dash.stdout == shown.stdout


def test_o_into_a_missing_folder_is_a_usage_error_before_any_work(panel, tmp_path):
    result = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "NOPE", "-o", tmp_path / "no" / "x.txt")
    assert result.exit_code == 1
    assert "E0930" in result.stderr and "E0908" not in result.stderr and "Traceback" not in result.stderr


def test_a_failed_run_leaves_no_file(panel, tmp_path):
    target = tmp_path / "P9.txt"
    result = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P9", "-o", target)
    assert result.exit_code == 1 and "E0908" in result.stderr
    assert not target.exists()


def test_columns_wrap_text_at_spaces(panel):
    """COLUMNS=80 (or a terminal's width) wraps long lines at spaces, never inside a name; without it a
    pipe keeps whole lines for grep."""
    wrapped = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", env={"COLUMNS": "80"}).stdout
    whole = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", env={"COLUMNS": ""}).stdout
    assert max(len(x) for x in whole.splitlines()) > 80
    assert all(len(x) <= 80 for x in wrapped.splitlines()), [x for x in wrapped.splitlines() if len(x) > 80]
    words = lambda text: re.findall(r"\S+", text)  # noqa: E731
    assert words(wrapped) == words(whole)


def test_on_a_terminal_rules_are_highlighted_at_its_width(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the contract named relatively: its path is one word, which no width breaks
    checked, program = compile_file(VZP.relative_to(ROOT))
    e = explain(program, checked.source, Run(files=files(tmp_path), period="2011-03"), "P1", line_id="drug_regulation")
    coloured = render_text(e, checked.source, width=60)
    assert "\x1b[" in coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert all(len(x) <= 60 for x in plain.splitlines()), plain
    assert "national_average_drug_cost" in plain and "recalculated_insured" in plain


# ─────────────────────────────── goldens ───────────────────────────────

@pytest.mark.parametrize("name, args, columns", [
    ("vzp_P1_2011-03", ("--period", "2011-03", "--practice", "P1"), ""),
    ("vzp_P1_2011-03_80", ("--period", "2011-03", "--practice", "P1"), "80"),
    ("vzp_P2_2011-Q1", ("--period", "2011-Q1", "--practice", "P2", "--set", "national_average_drug_cost=260"), ""),
    ("vzp_P1_member", ("--period", "2011-03", "--practice", "P1", "--line", "capitation", "--member", "M1"), ""),
])
def test_text_matches_golden(tmp_path, monkeypatch, name, args, columns):
    """Run where the files are, named relatively as a user types them, so that a line wrapped at 80
    columns does not depend on where the checkout or the temporary folder is."""
    (tmp_path / "contracts").mkdir()
    shutil.copy(VZP, tmp_path / "contracts" / VZP.name)
    files(tmp_path)
    monkeypatch.chdir(tmp_path)
    panel = ["--no-project"] + [x for t in PANEL for x in (f"--{t}", f"{t}.csv")]
    result = cli("explain", f"contracts/{VZP.name}", *panel, *args, env={"COLUMNS": columns})
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("CAPDSL_UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    assert all(x == x.rstrip() for x in text.splitlines())


def test_no_line_of_a_block_is_repeated(panel):
    """Within a month (or a pool's year) no line is printed twice: a value read by the amount, the
    condition and the basis is listed once, and a year sum's steps are not added to the last line."""
    for period in ("2011-03", "2011-Q1", "2011"):
        for practice in ("P1", "P2"):
            text = cli("explain", VZP, *panel, "--period", period, "--practice", practice).stdout
            blocks, current = [], []
            for row in text.splitlines():
                if re.match(r"  \S", row) or not row.strip():
                    blocks.append(current)
                    current = []
                current.append(row)
            blocks.append(current)
            for block in blocks:
                named = [r for r in block if not re.match(r"\s+[0-9.]+ × ", r)]
                assert len(named) == len(set(named)), [r for r in named if named.count(r) > 1]


# ─────────────────────────────── what was read ───────────────────────────────

def test_every_parameter_with_its_value_and_source(panel, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"national_average_recalculated_insured": "1500"}', encoding="utf-8")
    e = trail(panel, "--period", "2011-03", "--practice", "P1", "--params", params)
    assert {p["name"]: (p["value"], p["unit"], p["source"]) for p in e["parameters"]} == {
        "national_average_drug_cost": ("250", "CZK per member", "default"),
        "national_average_recalculated_insured": ("1500", "", str(params))}
    drug = line_of(e, "drug_regulation")
    assert [(p["name"], p["value"], p["source"]) for p in drug["parameters"]] == \
        [("national_average_drug_cost", "250", "default")]
    assert drug["parameters"][0]["declared"].startswith(f"{VZP}:")
    given = trail(panel, "--period", "2011-03", "--practice", "P1", "--params", params,
                  "--set", "national_average_drug_cost=300 CZK per member",
                  "--set", "national_average_recalculated_insured=1400")
    assert {p["name"]: (p["value"], p["source"]) for p in given["parameters"]} == {
        "national_average_drug_cost": ("300", "--set"), "national_average_recalculated_insured": ("1400", "--set")}
    text = cli("explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "--line", "drug_regulation",
               "--set", "national_average_drug_cost=300").stdout
    assert "parameter  national_average_drug_cost = 300 CZK per member (--set)" in text


def test_a_project_files_parameters_are_named_so(panel, tmp_path, monkeypatch):
    (tmp_path / "capdsl.toml").write_text("[params]\nnational_average_drug_cost = 270\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    e = trail([a for a in panel if a != "--no-project"], "--period", "2011-03", "--practice", "P1",
              "--set", "national_average_recalculated_insured=1500")
    assert {p["name"]: (p["value"], p["source"]) for p in e["parameters"]} == {
        "national_average_drug_cost": ("270", "project file"), "national_average_recalculated_insured": ("1500", "--set")}


def test_percent_parameters_read_as_percentages(panel, tmp_path):
    members = tmp_path / "members.csv"
    text = cli("explain", PMPM, "--no-project", "--members", members, "--period", "2011-03", "--practice", "P1").stdout
    assert "withhold_rate = 10% (default, declared" in text
    e = trail(["--no-project", "--members", str(members)], "--period", "2011-03", "--practice", "P1", contract=PMPM)
    withhold = line_of(e, "withhold")
    assert withhold["parameters"][0] | {"declared": None} == {"name": "withhold_rate", "value": "0.1", "unit": "%",
                                                             "source": "default", "declared": None}
    (month,) = withhold["months"]
    read = [s for s in month["steps"] if s["kind"] == "line"]  # the other line it reads, this month
    assert [(s["name"], s["value"]) for s in read] == [("capitation", line_of(e, "capitation")["months"][0]["amount"])]


def test_measures_name_the_row_read(panel):
    e = trail(panel, "--period", "2011-Q1", "--practice", "P1")
    drug = line_of(e, "drug_regulation")
    rows = {m["month"]: [(s["name"], s["value"], s["period"]) for s in m["steps"] if s["kind"] == "measure"]
            for m in drug["months"]}
    assert rows == {"2011-01": [("drug_cost_per_insured", "290", "2011")],
                    "2011-02": [("drug_cost_per_insured", "290", "2011")],
                    "2011-03": [("drug_cost_per_insured", "335.5", "2011-03")]}


def test_named_values_per_month_once_each(panel):
    e = trail(panel, "--period", "2011-03", "--practice", "P1")
    for line in e["lines"]:
        for month in line["months"]:
            keys = [(s["kind"], s["name"], s["value"], s["entry"], s["period"]) for s in month["steps"]]
            assert len(keys) == len(set(keys)), (line["id"], keys)
    drug = line_of(e, "drug_regulation")["months"][0]
    assert [s["name"] for s in drug["steps"]] == ["drug_cost_per_insured", "recalculated_insured"]
    (agg,) = drug["aggregates"]
    assert agg["name"] == "recalculated_insured" and agg["value"] == "9.36"  # 3.91 + 1.00 + 1.10 + 1.35 + 2.00
    assert sum(Decimal(g["subtotal"]) for g in agg["groups"]) == Decimal(agg["value"])
    # the tier matched, with its entry, as a named value inside each group of the capitation
    capitation = line_of(e, "capitation")["months"][0]["aggregates"][0]
    for group in capitation["groups"]:
        tiers = {s["name"]: (s["value"], s["entry"]) for s in group["steps"]}
        assert tiers["base_rate"] == ("50", "practice.weekly_hours >= 30 hours and practice.late_days >= 1 day "
                                            "and practice.booking_days >= 2 days")
    # the last monthly line holds no step of the pool's year sum
    last = line_of(e, "small_practice_topup")["months"][0]
    assert all(s["name"] != "base_rate" for s in last["steps"]), last["steps"]


def test_a_line_not_applied_says_which_part_failed(panel):
    e = trail(panel, "--period", "2011-Q1", "--practice", "P1")
    topup = line_of(e, "small_practice_topup")
    assert [m["reasons"] for m in topup["months"]] == [["`practice.small_practice` is false",
                                                        "`measure.insurer_share is present` does not hold"]] * 3
    text = cli("explain", VZP, *panel, "--period", "2011-Q1", "--practice", "P1", "--line",
               "small_practice_topup").stdout
    assert "  2011-01 to 2011-03: not applied — `practice.small_practice` is false; " in text


# ─────────────────────────────── pools ───────────────────────────────

def test_a_pool_shows_the_year_month_by_month_and_each_installment(panel):
    e = trail(panel, "--period", "2011-03", "--practice", "P1")
    bonus = line_of(e, "akord_bonus")
    pool = bonus["pool"]
    (year_sum,) = pool["year_sums"]
    assert year_sum["what"] == "sum of base_rate * count of members over year"
    assert [m["month"] for m in year_sum["months"]] == [f"2011-{n:02d}" for n in range(1, 13)]
    assert sum(Decimal(m["value"]) for m in year_sum["months"]) == Decimal(year_sum["value"])
    assert Decimal(pool["unrounded"]) == Decimal("0.15") * Decimal(year_sum["value"])
    for month in year_sum["months"]:
        (tier,) = month["steps"]
        assert (tier["name"], tier["value"]) == ("base_rate", "50") and tier["entry"].startswith("practice.weekly")
        (count,) = month["aggregates"]
        assert Decimal(month["value"]) == 50 * Decimal(count["value"])
    assert year_sum["months"][0]["aggregates"][0]["value"] == "4"  # M6 is born in February
    assert year_sum["months"][2]["aggregates"][0]["value"] == "5"
    assert [(i["label"], i["share"], i["paid"], i["due"]) for i in pool["installments"]] == [
        ("Q1", "10%", True, True), ("Q2", "10%", True, False), ("Q3", "10%", True, False),
        ("Q4", "rest", False, False)]
    q4 = pool["installments"][3]
    assert q4["amount"] == "0" and q4["reasons"] == ["`measure.akord_quality_met` is false"]
    assert [(s["name"], s["value"], s["period"]) for s in q4["steps"]] == [("akord_quality_met", False, "2011")]
    assert bonus["amount"] == pool["installments"][0]["amount"]  # only Q1 falls in March
    assert all(s["kind"] != "installment" for s in pool["steps"])


def test_a_pool_not_applied_gives_the_reason(panel):
    e = trail(panel, "--period", "2011-Q4", "--practice", "P2")
    pool = line_of(e, "akord_bonus")["pool"]
    assert not pool["applied"] and pool["reasons"] == ["`practice.akord` is false"]
    text = cli("explain", VZP, *panel, "--period", "2011-Q4", "--practice", "P2", "--line", "akord_bonus").stdout
    assert "  year 2011: not applied — `practice.akord` is false → 0" in text


def test_a_period_without_installments_says_so(panel):
    text = cli("explain", VZP, *panel, "--period", "2011-02", "--practice", "P1", "--line", "akord_bonus").stdout
    assert "no installment of this pool is paid in 2011-02" in text


def test_a_withheld_release_names_the_measure_and_the_threshold(tmp_path):
    members = tmp_path / "members.csv"
    members.write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", encoding="utf-8")
    measures = tmp_path / "measures.csv"
    measures.write_text("practice_id,period,measure,value\nP1,2011,quality_score,72%\n", encoding="utf-8")
    e = trail(["--no-project", "--members", str(members), "--measures", str(measures)], "--period", "2011-Q4",
              "--practice", "P1", contract=PMPM)
    (inst,) = line_of(e, "withhold_release")["pool"]["installments"]
    assert not inst["paid"] and inst["due"]
    assert inst["condition"] == "measure.quality_score is present and measure.quality_score >= quality_threshold"
    assert [(s["name"], s["value"], s["period"]) for s in inst["steps"]] == [("quality_score", "0.72", "2011")]
    assert inst["reasons"] == [f"`{inst['condition']}` does not hold"]


# ─────────────────────────────── JSON ───────────────────────────────

TOP = {"contract", "path", "period", "practice_id", "currency", "parameters", "lines", "warnings"}
LINE = {"id", "label", "kind", "source", "ref", "lines", "rule", "condition", "due_text", "parameters", "practice",
        "months", "amount"}
MONTH = {"month", "applied", "due", "payment", "reasons", "unrounded", "amount", "rounding", "basis", "basis_label",
         "aggregates", "steps"}
STEP = {"kind", "name", "value", "detail", "source", "entry", "period"}
AGG = {"name", "what", "source", "value", "groups"}
GROUP = {"key", "count", "value", "subtotal", "matched", "steps"}
POOL = {"year", "applied", "reasons", "unrounded", "amount", "rounding", "steps", "year_sums", "installments"}
YEAR_SUM = {"what", "value", "months"}
YEAR_MONTH = {"month", "value", "steps", "aggregates"}
INSTALLMENT = {"month", "quarter", "label", "share", "amount", "paid", "due", "condition", "reasons", "steps"}
PARAMETER = {"name", "value", "unit", "source", "declared"}
MEMBER = {"member_id", "birth_date", "months"}
MEMBER_MONTH = {"month", "age", "weight", "values"}
MEMBER_VALUE = {"name", "aggregate", "what", "included", "value", "steps"}


def test_the_json_keys_are_the_documented_ones(panel):
    e = trail(panel, "--period", "2011-03", "--practice", "P1", "--member", "M1")
    assert set(e) == TOP | {"member"} and set(e["member"]) == MEMBER
    docs = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", docs.split("## Explain", 1)[1].split("\n## ", 1)[0]))
    for keys in (TOP, LINE, MONTH, STEP, AGG, GROUP, POOL, YEAR_SUM, YEAR_MONTH, INSTALLMENT, PARAMETER, MEMBER,
                 MEMBER_MONTH, MEMBER_VALUE):
        assert keys <= documented, keys - documented
    for month in e["member"]["months"]:
        assert set(month) == MEMBER_MONTH and all(set(v) == MEMBER_VALUE for v in month["values"])
    for p in e["parameters"]:
        assert set(p) == PARAMETER
    for line in e["lines"]:
        assert set(line) == LINE | ({"pool"} if line["kind"] == "pool" else set())
        for month in line["months"]:
            assert set(month) == MONTH
            for step in month["steps"]:
                assert set(step) == STEP
            for agg in month["aggregates"]:
                assert set(agg) == AGG and all(set(g) == GROUP for g in agg["groups"])
        if "pool" in line:
            pool = line["pool"]
            assert set(pool) == POOL
            for ys in pool["year_sums"]:
                assert set(ys) == YEAR_SUM and all(set(m) == YEAR_MONTH for m in ys["months"])
            assert all(set(i) == INSTALLMENT for i in pool["installments"])


def test_the_json_carries_what_the_text_shows(panel):
    e = trail(panel, "--period", "2011-03", "--practice", "P1")
    text = render_text(e)
    assert render_json(e) == json.dumps(e, ensure_ascii=False, indent=2) + "\n"
    for line in e["lines"]:
        assert line["rule"].split("\n")[-1] in text
        for p in line["parameters"]:
            assert p["name"] in text
        for month in line["months"]:
            for step in month["steps"]:
                assert step["name"] in text
    for inst in line_of(e, "akord_bonus")["pool"]["installments"]:
        assert f"{inst['label']}: {inst['amount']}" in text


# ─────────────────────────────── privacy ───────────────────────────────

def test_birth_dates_only_with_show_ids(panel):
    base = ["explain", VZP, *panel, "--period", "2011-03", "--practice", "P1", "--member", SECRET]
    for fmt in ("text", "json"):
        hidden = cli(*base, "--format", fmt)
        assert hidden.exit_code == 0, hidden.stderr
        assert SECRET in hidden.stdout and SECRET_BIRTH not in hidden.stdout  # the id typed is shown as given
        shown = cli(*base, "--format", fmt, "--show-ids")
        assert SECRET_BIRTH in shown.stdout
        redacted = cli(*base, "--format", fmt, "--show-ids", "--redact")  # --redact wins in the trail
        assert SECRET not in redacted.stdout and SECRET_BIRTH not in redacted.stdout
    assert trail(panel, "--period", "2011-03", "--practice", "P1", "--member", SECRET)["member"]["birth_date"] is None


BORN = """\
contract "born":
    currency CZK
end

line early "Born before 1970" = sum of (if member.birth_date < 1970-01-01 then 10 CZK else 5 CZK) over members
line named "Members named" = sum of (if member.id = "M2" then 1 CZK else 2 CZK) over members
line seen "Events of known members" = (count of events where event.member is present) * 1 CZK
"""


def test_group_keys_hide_birth_dates_and_member_ids_unless_show_ids(tmp_path):
    (tmp_path / "born.cap").write_text(BORN, encoding="utf-8")
    members = tmp_path / "members.csv"
    members.write_text(f"member_id,practice_id,birth_date\n{SECRET},P1,{SECRET_BIRTH}\nM2,P1,1960-03-03\n",
                       encoding="utf-8")
    events = tmp_path / "events.csv"
    events.write_text(f"practice_id,member_id,date,code\nP1,{SECRET},2011-03-02,X\n", encoding="utf-8")
    args = ["explain", tmp_path / "born.cap", "--no-project", "--members", members, "--events", events,
            "--period", "2011-03", "--practice", "P1"]
    for fmt in ("text", "json"):
        hidden = cli(*args, "--format", fmt)
        assert hidden.exit_code == 0, hidden.stderr
        assert SECRET_BIRTH not in hidden.stdout and "1960-03-03" not in hidden.stdout and SECRET not in hidden.stdout
        assert "birth_date=hidden" in hidden.stdout or '"birth_date": "hidden"' in hidden.stdout
        assert _hash(SECRET) in hidden.stdout
        shown = cli(*args, "--format", fmt, "--show-ids")
        assert SECRET_BIRTH in shown.stdout and "1960-03-03" in shown.stdout and SECRET in shown.stdout
        redacted = cli(*args, "--format", fmt, "--show-ids", "--redact")
        assert SECRET_BIRTH not in redacted.stdout and SECRET not in redacted.stdout
    e = json.loads(cli(*args, "--format", "json").stdout)
    (agg,) = line_of(e, "early")["months"][0]["aggregates"]
    assert sorted(Decimal(g["subtotal"]) for g in agg["groups"]) == [Decimal(5), Decimal(10)]  # still add up


def _hash(member_id: str) -> str:
    import hashlib

    return "m:" + hashlib.sha256(member_id.encode()).hexdigest()[:10]


def test_the_api_hides_birth_dates_unless_show_ids(tmp_path):
    import capdsl

    paths = files(tmp_path)
    contract = capdsl.load(str(VZP))
    hidden = contract.explain("2011-03", "P1", **paths, member=SECRET)
    assert hidden["member"]["birth_date"] is None and SECRET not in json.dumps(hidden)
    shown = contract.explain("2011-03", "P1", **paths, member=SECRET, show_ids=True)
    assert shown["member"]["birth_date"] == SECRET_BIRTH and shown["member"]["member_id"] == SECRET


# ─────────────────────────────── the pieces ───────────────────────────────

@pytest.mark.parametrize("periods", [{}, {"2011": 1}, {"2011-Q1": 2, "2011": 1}, {"2011-03": 3, "2011-Q1": 2},
                                     {"2011-02": 4}])
@pytest.mark.parametrize("whole_year", [False, True])
def test_visible_period_is_the_row_visible_measure_reads(periods, whole_year):
    month = date(2011, 3, 1)
    key = visible_period(periods, month, whole_year)
    assert (periods.get(key) if key else None) == visible_measure(periods, month, whole_year)


def test_explain_adds_up_on_a_random_small_contract(tmp_path):
    """The trail of an inline contract: groups add up to aggregates and unrounded + rounding = amount."""
    source = Source('contract "t":\n    currency USD\nend\nbands w by member.age:\n    0 to 49: 1.5\n'
                    '    50 and over: 2.25\nend\nline cap "Cap" = sum of w * 3.333 USD over members\n', "t.cap")
    _, program = compile_source(source)
    e = explain(program, source, Run(files=files(tmp_path), period="2011-Q1"), "P1")
    for month in e["lines"][0]["months"]:
        assert Decimal(month["unrounded"]) + Decimal(month["rounding"]) == Decimal(month["amount"])
        (agg,) = month["aggregates"]
        assert sum(Decimal(g["subtotal"]) for g in agg["groups"]) == Decimal(agg["value"]) == Decimal(month["unrounded"])


TWICE = """\
contract "p":
    currency CZK
end

line cap "Cap" = sum of 10 CZK over members

pool bonus "Bonus":
    amount 10% of sum of cap over year
    paid 50% in Q2, rest in Q4 when sum of cap over year > 0 CZK
end
"""


def test_a_year_sum_written_twice_is_shown_once(tmp_path):
    source = Source(TWICE, "twice.cap")
    _, program = compile_source(source)
    e = explain(program, source, Run(files=files(tmp_path), period="2011-Q2"), "P1")
    pool = line_of(e, "bonus")["pool"]
    (year_sum,) = pool["year_sums"]
    assert year_sum["what"] == "sum of cap over year" and Decimal(year_sum["value"]) == 10 * Decimal(pool["unrounded"])
    assert [(i["label"], i["paid"], i["due"]) for i in pool["installments"]] == [("Q2", True, True), ("Q4", True, False)]
    assert render_text(e).count("sum of cap over year =") == 1


def test_tracing_changes_no_amount(tmp_path):
    """explain's tracer (year sums, installment conditions, measure rows) leaves every amount as it is."""
    from capdsl.evaluation.interpret import Tracer, evaluate
    from capdsl.pipeline import interpreter_inputs

    _, program = compile_file(VZP)
    for period in ("2011-03", "2011"):
        when, params, rows, _ = interpreter_inputs(program, Run(files=files(tmp_path), period=period))
        plain = evaluate(program, rows, when.months, params)
        traced = evaluate(program, rows, when.months, params, tracer=Tracer())
        assert (plain.rows, plain.pools, plain.installments) == (traced.rows, traced.pools, traced.installments)


def test_explain_says_which_side_of_a_corridor_the_year_fell_on(tmp_path):
    """The corridor's adjustment names its branch with the band's bounds as written: above the band,
    below it, or inside it (nothing), whatever the engine the statement came from."""
    from click.testing import CliRunner

    from capdsl.tools.cli import main

    (tmp_path / "c.cap").write_text(
        'contract "C":\n    currency CZK\nend\ninputs:\n    practice target: money = 3000 CZK\nend\n'
        'line capitation "Capitation" = sum of 100 CZK over members\n'
        'settlement corridor "Risk corridor":\n    total sum of capitation over year\n'
        "    corridor around practice.target within 3% share 50%\nend\n", encoding="utf-8")
    said = {}
    for n, target in ((3, "3000"), (3, "3600"), (3, "4000")):
        (tmp_path / "m.csv").write_text("member_id,practice_id,birth_date\n"
                                        + "".join(f"M{i},P1,1970-01-01\n" for i in range(n)), encoding="utf-8")
        (tmp_path / "p.csv").write_text(f"practice_id,target\nP1,{target}\n", encoding="utf-8")
        out = CliRunner(env={"COLUMNS": "200"}).invoke(main, [
            "explain", str(tmp_path / "c.cap"), "--members", str(tmp_path / "m.csv"), "--practices",
            str(tmp_path / "p.csv"), "--period", "2011", "--practice", "P1", "--line", "corridor"]).stdout
        said[target] = next(line.strip() for line in out.splitlines() if line.strip().startswith("corridor:"))
    assert said["3000"].startswith("corridor: above the band: the total is over practice.target + 3% of "
                                   "practice.target; 50% of the excess given back → -255")
    assert said["3600"].startswith("corridor: inside the band (practice.target ± 3%): nothing → 0")
    assert said["4000"].startswith("corridor: below the band: the total is under practice.target − 3% of "
                                   "practice.target; 50% of the shortfall made up → 140")
