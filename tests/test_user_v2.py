"""The language's newer constructs as a contract author and a payer analyst use them: a quarterly
contract that combines a list taken on the quarter's first day, rate cells, intermediate rounding,
a member's own events, a pool split with a condition and a settlement — run on every engine and
in every output format; `capdsl explain` on lines with payment terms; `capdsl test --generate`;
and diagnostics on a very long contract line."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main

D = Decimal

COMBO = """\
# A quarterly contract: rate cells, a member's own events, a pool and a settlement
contract "Quarterly combo":
    currency USD
    list as of quarter_start
    rounding half_even 0.01 per line
    retroactive 6 months
end

inputs:
    member category: text
    event allowed: money
    measure quality_met: bool
    practice target: money = 100000 USD
end

cells base_rate by member.category, member.age, member.sex:
    "TANF", under 21, any: 180.10 USD
    "TANF", 21 and over, "F": 310.00 USD
    "TANF", 21 and over, "M": 250.00 USD
    "SSI", any, any: 1210.00 USD
    otherwise: 100 USD
end

define factor = 1.0425
define cell_rate = round(base_rate * factor, 0.05, half_even)
define annual_claims = sum of event.allowed over member events during year
define q_visits = count of member events during quarter where event.code = "GP"

line capitation "Capitation":
    amount sum of cell_rate over members
    rate per quarter
    paid quarterly
end

line visits "Visit bonus":
    amount sum of 2 USD * q_visits over members
    paid quarterly
end

line stop_loss "Stop-loss":
    amount sum of 80% of max(0 USD, annual_claims - 1000 USD) over members
    paid in December
    rate per year
end

pool quality "Quality":
    amount 5% of sum of capitation over year
    paid 50% in Q2, rest in Q4 when measure.quality_met
end

settlement corridor "Corridor":
    total sum of capitation over year + quality
    corridor around practice.target within 3% share 50%
end
"""

MEMBERS = """\
member_id,practice_id,birth_date,sex,enrolled_from,enrolled_to,category
M1,P1,1980-03-15,F,2010-01-01,,TANF
M2,P1,1995-06-01,M,2011-02-10,,TANF
M3,P1,2000-01-01,,2010-01-01,2011-05-05,SSI
M4,P2,1950-12-31,F,,,TANF
M5,P2,1991-04-01,M,,,OTHER
"""

EVENTS = """\
practice_id,member_id,date,code,allowed,quantity
P1,M1,2011-01-15,GP,500,1
P1,M1,2011-03-15,GP,700,2
P2,M1,2011-07-01,INP,3000,1
P1,M2,2011-05-01,GP,20,1
P2,M4,2011-12-31,GP,100.5,1
P2,,2011-04-01,GP,100,1
"""

MEASURES = "practice_id,period,measure,value\nP1,2011,quality_met,true\nP2,2011,quality_met,false\n"
# P2's target is empty: it takes the declared default, 100,000 USD
PRACTICES = "practice_id,target\nP1,5000\nP2,\n"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def combo(tmp_path):
    """The contract and its panel in a folder; the arguments `eval` and `explain` take."""
    (tmp_path / "q.cap").write_text(COMBO, "utf-8")
    for name, text in (("members", MEMBERS), ("events", EVENTS), ("measures", MEASURES), ("practices", PRACTICES)):
        (tmp_path / f"{name}.csv").write_text(text, "utf-8")
    return tmp_path, [tmp_path / "q.cap", "--panel", tmp_path]


def amounts(csv_text: str) -> dict[tuple[str, str], Decimal]:
    rows = [line.split(",") for line in csv_text.strip().splitlines()]
    head = rows[0]
    return {(r[head.index("practice_id")], r[head.index("line")]): D(r[head.index("amount")]) for r in rows[1:]}


# The year's statements, computed by hand:
# cell rates (the quarter's first day decides the list and the age): TANF F 31 → 310.00 × 1.0425 =
# 323.175, to 0.05 half to even 323.20; TANF M 15 → 187.75425 → 187.75; SSI → 1261.425 → 1261.40;
# OTHER → 104.25. P1: Q1 M1 + M3 = 1584.60, Q2 + M2 = 1772.35, Q3 and Q4 M1 + M2 = 510.95 each:
# 4378.85. P2: 4 × (323.20 + 104.25) = 1709.80.
# visits (a monthly rate paid quarterly: three months' amount): Q1 M1 3 visits × 2 × 3 = 18, Q2 M2
# 1 × 2 × 3 = 6; P2 in December 6 (the event without a member is nobody's).
# stop-loss: M1's claims at both practices 4200 → 80 % × 3200 = 2560.00 in December.
# quality: 5 % of 4378.85 = 218.9425 → 218.94 (P1, both halves); P2 85.49, Q2 42.74, Q4 withheld.
# corridor: P1 4378.85 + 218.94 = 4597.79 under 4850 → 50 % × 252.21 = 126.105 → 126.10;
# P2 1709.80 + 42.74 = 1752.54 under 97,000 → 47,623.73.
YEAR = {("P1", "capitation"): D("4378.85"), ("P1", "visits"): D("24.00"), ("P1", "stop_loss"): D("2560.00"),
        ("P1", "quality"): D("218.94"), ("P1", "corridor"): D("126.10"), ("P1", "total"): D("7307.89"),
        ("P2", "capitation"): D("1709.80"), ("P2", "visits"): D("6.00"), ("P2", "stop_loss"): D("0.00"),
        ("P2", "quality"): D("42.74"), ("P2", "corridor"): D("47623.73"), ("P2", "total"): D("49382.27")}


@pytest.mark.parametrize("engine", ["duckdb", "python"])
def test_a_quarterly_contract_with_cells_member_events_a_pool_and_a_settlement(combo, engine):
    _, args = combo
    result = run("eval", *args, "--period", "2011", "--format", "csv", "--engine", engine, "-q")
    assert result.exit_code == 0, result.output
    assert amounts(result.stdout) == YEAR


def test_the_engines_agree_in_every_format_and_period(combo):
    import openpyxl
    import pyarrow.parquet as pq

    tmp, args = combo
    for period in ("2011", "2011-Q1", "2011-Q2", "2011-Q4", "2011-06", "2011-12"):
        for extra in ((), ("--by", "month"), ("--detail", "member"), ("--summary",)):
            outs = {}
            for engine in ("duckdb", "python"):
                for ext in ("csv", "json", "parquet", "xlsx", "txt"):
                    out = tmp / f"{engine}.{ext}"
                    result = run("eval", *args, "--period", period, *extra, "--engine", engine, "-q", "-o", out)
                    assert result.exit_code == 0, (period, extra, ext, result.output)
                    if ext == "json":
                        data = json.loads(out.read_text("utf-8"))
                        data.pop("engine", None)
                        outs[engine, ext] = data
                    elif ext == "parquet":
                        outs[engine, ext] = pq.read_table(out)
                    elif ext == "xlsx":
                        outs[engine, ext] = [[c.value for c in row] for row in
                                             openpyxl.load_workbook(out).worksheets[0].iter_rows()]
                    else:
                        outs[engine, ext] = out.read_text("utf-8")
            for ext in ("csv", "json", "xlsx", "txt"):
                assert outs["duckdb", ext] == outs["python", ext], (period, extra, ext)
            assert outs["duckdb", "parquet"].equals(outs["python", "parquet"]), (period, extra)
    html = {}
    for engine in ("duckdb", "python"):
        result = CliRunner(env={"SOURCE_DATE_EPOCH": "0"}).invoke(  # the run's time fixed
            main, ["eval", *map(str, args), "--period", "2011-Q4", "--engine", engine, "-q", "-o",
                   str(tmp / f"{engine}.html")], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        html[engine] = (tmp / f"{engine}.html").read_text("utf-8").replace(f"<dd>{engine}</dd>", "<dd>ENGINE</dd>")
    assert html["duckdb"] == html["python"]


# ─────────────────────────────── explain ───────────────────────────────

YEARLY = """\
contract "Payment terms":
    currency EUR
end

line global_sum "Global sum":
    amount sum of 100.00 EUR over members
    rate per year
end

line registration "Registration":
    amount sum of 10.00 EUR over members
    paid quarterly
end

line retainer "Retainer":
    amount 1200 EUR
    paid in June, December
    rate per year
end
"""


def test_explain_shows_what_payment_terms_do_to_a_month(tmp_path):
    """A paid month's aggregates times the factor the terms give is the unrounded amount, and a month
    the line is not paid in says so instead of reading `0 → rounded 0, basis: 0 members`."""
    (tmp_path / "c.cap").write_text(YEARLY, "utf-8")
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\nM2,P1,1980-01-01\n",
                                          "utf-8")
    base = ["explain", tmp_path / "c.cap", "--members", tmp_path / "members.csv", "--period", "2011",
            "--practice", "P1"]
    text = " ".join(run(*base).stdout.split())  # as read, whatever the terminal's width folds
    assert "2011-01 to 2011-02: not due (paid quarterly) → 0" in text
    assert "the amount × 3 (paid quarterly: this payment is for 3 months)" in text
    assert "the amount × 1 ÷ 12 (rate per year, paid every month: this payment is for one month)" in text
    assert "2011-07 to 2011-11: not due (paid in June, December) → 0" in text
    assert "the amount × 6 ÷ 12 (rate per year, paid in June, December: this payment is for 6 months)" in text

    factors = {"× 3": D(3), "× 1 ÷ 12": D(1) / 12, "× 6 ÷ 12": D(6) / 12}
    data = json.loads(run(*base, "--format", "json").stdout)
    for line in data["lines"]:
        assert line["due_text"] == {"global_sum": None, "registration": "paid quarterly",
                                    "retainer": "paid in June, December"}[line["id"]]
        paid = D(0)
        for month in line["months"]:
            if not month["due"]:
                assert month["amount"] == "0" and month["payment"] is None
                continue
            factor = next(v for k, v in factors.items() if month["payment"].startswith(f"the amount {k} ("))
            before = D(month["aggregates"][0]["value"]) if month["aggregates"] else D(1200)
            assert abs(before * factor - D(month["unrounded"])) < D("1e-11"), (line["id"], month)
            assert D(month["unrounded"]) + D(month["rounding"]) == D(month["amount"])
            paid += D(month["amount"])
        assert paid == D(line["amount"])
    statement = amounts(run("eval", tmp_path / "c.cap", "--members", tmp_path / "members.csv", "--period", "2011",
                            "--format", "csv", "-q").stdout)
    assert {k[1]: v for k, v in statement.items() if k[1] != "total"} == {
        line["id"]: D(line["amount"]) for line in data["lines"]}


def test_explain_of_a_line_paid_every_month_at_a_monthly_rate_names_no_factor(combo):
    _, args = combo
    text = run("explain", *args, "--period", "2011-Q2", "--practice", "P1", "--line", "capitation").stdout
    assert "2011-04 to 2011-05: not due (paid quarterly) → 0" in text
    assert "the amount ×" not in text  # a quarter's rate paid once a quarter: a factor of 1


# ─────────────────────────────── test --generate ───────────────────────────────

def test_generate_writes_checked_examples_for_a_contract_with_rate_cells(combo, tmp_path):
    tmp, _ = combo
    result = run("test", "--generate", tmp / "q.cap")
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.output
    assert 'example "generated: cells base_rate":' in result.stdout


def test_generate_picks_a_month_the_lines_are_paid_in(combo):
    tmp, _ = combo
    out = run("test", "--generate", tmp / "q.cap").stdout
    # every line is paid in December (quarterly, in December): not January, where every amount is 0
    assert "    period 2011-12\n" in out and "expect G01 capitation = 187.75 USD" in out
    nl = Path(__file__).resolve().parent.parent / "contracts" / "nl_gp_registration.cap"
    assert "    period 2011-01\n" in run("test", "--generate", nl).stdout  # paid in January, April, …
    assert "    period 2011-07\n" in run("test", "--generate", tmp / "q.cap", "--generate-period", "2011-07").stdout


def test_generate_writes_to_o_and_refuses_options_it_would_ignore(combo):
    tmp, _ = combo
    out = tmp / "generated.cap"
    result = run("test", "--generate", tmp / "q.cap", "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    blocks = out.read_text("utf-8")
    assert blocks.startswith("# ── Generated by `capdsl test --generate`")
    contract = tmp / "q.cap"
    contract.write_text(COMBO + "\n" + blocks, "utf-8")
    checked = run("test", contract)
    assert checked.exit_code == 0, checked.output
    assert re.search(r"^[1-9]\d* passed, 0 failed$", checked.output, re.M)

    for extra in (("--format", "junit"), ("-k", "x"), ("--append", "-o", tmp / "x.cap"), (tmp / "q.cap",)):
        result = run("test", "--generate", tmp / "q.cap", *extra)
        assert result.exit_code == 1 and "error[E0914]" in result.output, extra
        assert "cannot be used with --generate" in result.output
    assert not (tmp / "x.cap").exists()
    result = run("test", "--generate", tmp / "q.cap", "-o", tmp / "missing" / "g.cap")
    assert result.exit_code == 1 and "error[E0930]" in result.output


# ─────────────────────────────── diagnostics ───────────────────────────────

def test_an_error_on_a_very_long_line_shows_a_window_around_its_column(tmp_path):
    head = 'line a "' + "Capitation " * 300 + '" = 1 EUR + 1 '
    (tmp_path / "long.cap").write_text(f'contract "L":\n    currency EUR\nend\n{head}CZK\n', "utf-8")
    result = run("check", tmp_path / "long.cap")
    assert result.exit_code == 1
    column = len(head) + 1
    assert f"long.cap:4:{column}: error[E0303]" in result.output
    lines = result.output.split("error[E0303]", 1)[1].splitlines()
    source = next(i for i, text in enumerate(lines) if text.startswith("4 | …") and text.endswith("1 CZK"))
    assert max(len(text) for text in lines) < 200
    caret = lines[source + 1]
    # the caret stands under CZK in the window
    assert lines[source][caret.index("^"):caret.index("^") + 3] == "CZK"


def test_a_line_a_person_wrote_is_shown_whole(tmp_path):
    condition = " and ".join(f"practice.hours >= {i} hours" for i in range(8)) + " and practice.hours >= 9"
    text = (f'contract "L":\n    currency EUR\nend\ninputs:\n    practice hours: hours\nend\n'
            f'line a "A":\n    amount 1 EUR\n    applies when {condition}\nend\n')
    assert 200 < len(f"    applies when {condition}") < 400
    (tmp_path / "c.cap").write_text(text, "utf-8")
    result = run("check", tmp_path / "c.cap")
    assert result.exit_code == 1 and "error[E0302]" in result.output
    assert f"9 |     applies when {condition}\n" in result.output


# ─────────────────────────────── PostgreSQL ───────────────────────────────

@pytest.mark.postgres
def test_the_combo_contract_on_postgresql_matches_the_interpreter(pg):
    from datetime import date

    from capdsl.errors import Source
    from capdsl.evaluation.interpret import evaluate as interpret
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import compile_source
    from sql_support import Panel, pg_evaluate

    # the settlement's total reads the pool's paid amount several times: planned in milliseconds with
    # the practice-month layers materialized (dialects.Postgres.finish), in minutes without
    prog = compile_source(Source(COMBO, "q.cap"))[1]
    panel = Panel(member_attrs={"category": "text"}, practice_attrs={"target": "decimal"},
                  event_attrs={"allowed": "decimal"}, measure_kinds={"quality_met": "bool"})
    panel.practice("P1", target=D(5000))
    panel.practice("P2", target=D(100000))
    for line in MEMBERS.splitlines()[1:]:
        mid, pid, born, sex, start, end, category = line.split(",")
        panel.member(mid, pid, date.fromisoformat(born), date.fromisoformat(start) if start else None,
                     date.fromisoformat(end) if end else None, sex=sex or None, category=category)
    for line in EVENTS.splitlines()[1:]:
        pid, mid, day, code, allowed, quantity = line.split(",")
        panel.event(pid, date.fromisoformat(day), code, quantity=quantity, member_id=mid or None, allowed=D(allowed))
    panel.measures += [("P1", "2011", "quality_met", True), ("P2", "2011", "quality_met", False)]
    pg.load(panel)
    for period in ("2011", "2011-Q2", "2011-12"):
        per = parse_period(period)
        got, want = pg_evaluate(pg, prog, per), interpret(prog, panel.rows(), per.months, {})
        for part in ("rows", "pools", "installments", "practices"):
            assert getattr(got, part) == getattr(want, part), (period, part)
