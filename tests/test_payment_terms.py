"""The terms of language v2 that say when and how much is paid, on the interpreter and DuckDB, for a
month, a quarter and the year: lines paid in some months (`paid quarterly`, `paid in …`) and rated
per quarter or year (`rate per …`), lists taken on a quarter's first day (`list as of`), a member's
own events (`over member events during …`), pool installments in any month, settlements (cap,
floor, corridor) and dated values that end (`until`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capdsl.errors import CapError, EvalError, Source
from capdsl.pipeline import Run, compile_source, evaluate as run_pipeline

D = Decimal
ENGINES = ["python", "duckdb"]

MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,2010-01-01,
M2,P1,1980-05-05,2011-02-15,
M3,P1,1990-03-03,2010-01-01,2011-02-10
M4,P1,1926-02-20,2010-01-01,
"""
# M1: 700 + 900 in 2011 (over the 1,000 attachment point); M2: 100; an event without a member
EVENTS = """practice_id,member_id,date,code,amount
P1,M1,2011-03-01,X,700
P1,M1,2011-11-01,X,900
P1,M2,2011-06-01,X,100
P1,,2011-06-01,X,5000
"""

QUARTERLY = """
contract "Quarterly":
    currency EUR
    list as of quarter_start
end

inputs:
    event amount: money
end

bands fee by member.age:
    0 to 84: 10 EUR
    85 and over: 20 EUR
end

line registration "Registration fee":
    amount sum of fee over members
    rate per quarter
    paid in January, April, July, October
end

line global_sum "Global sum":
    amount sum of 120 EUR over members
    rate per year
end

line stop_loss "Stop-loss":
    amount sum of 80% of max(0 EUR, sum of event.amount over member events during year - 1000 EUR) over members
    rate per year
    paid in December
end

line claims "Claims this quarter":
    amount sum of sum of event.amount over member events during quarter over members
    rate per quarter
    paid quarterly
end

pool bonus "Bonus":
    amount 10% of sum of registration over year
    paid monthly
end
"""


def files(tmp_path) -> dict:
    (tmp_path / "members.csv").write_text(MEMBERS, encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    return {"members": str(tmp_path / "members.csv"), "events": str(tmp_path / "events.csv")}


def run(text: str, tmp_path, period: str, engine: str, by_month: bool = False):
    program = compile_source(Source(text, "t.cap"))[1]
    result, _ = run_pipeline(program, Run(files=files(tmp_path), period=period, engine=engine,
                                          today=date(2012, 6, 1)), by_month=by_month)
    return result


def amounts(result) -> dict[str, Decimal]:
    return {line.id: line.amount for st in result.statements for line in st.lines}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_quarterly_fee_on_the_quarter_start_list(engine, tmp_path):
    """The list of 1 January (M1, M3 and M4, who turns 85 on 20 February) holds for Q1: M3, who left
    on 10 February, is paid for the quarter, M2, who joined on 15 February, from Q2, and M4 at the
    under-85 rate until Q2, whose list takes the age on 1 April."""
    q1 = amounts(run(QUARTERLY, tmp_path, "2011-Q1", engine))
    assert q1["registration"] == D("30.00")  # 3 × 10, once, in January
    assert q1["global_sum"] == D("90.00")  # 3 members × 120 / 12 × 3 months
    q2 = amounts(run(QUARTERLY, tmp_path, "2011-Q2", engine))
    assert q2["registration"] == D("40.00")  # M1 and M2 at 10, M4 at 20
    year = amounts(run(QUARTERLY, tmp_path, "2011", engine))
    assert year["registration"] == D("30.00") + 3 * D("40.00")
    assert year["global_sum"] == D("90.00") + 9 * D("30.00")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_month_shows_where_a_quarterly_payment_falls(engine, tmp_path):
    result = run(QUARTERLY, tmp_path, "2011-Q1", engine, by_month=True)
    (st,) = result.statements
    months = {m.month: {line.id: line for line in m.lines} for m in st.months}
    assert months["2011-01"]["registration"].amount == D("30.00")
    assert months["2011-02"]["registration"].amount == D("0.00")
    assert months["2011-02"]["registration"].note == "not due this month (paid in January, April, July, October)"
    assert sum(m["registration"].amount for m in months.values()) == amounts(result)["registration"]
    march = amounts(run(QUARTERLY, tmp_path, "2011-03", engine))
    assert march["registration"] == D("0.00") and march["claims"] == D("700.00")
    (line,) = [x for x in run(QUARTERLY, tmp_path, "2011-02", engine).statements[0].lines if x.id == "registration"]
    assert line.note == "not due in this period (paid in January, April, July, October)"


@pytest.mark.parametrize("engine", ENGINES)
def test_individual_stop_loss_reads_a_members_own_events_over_the_year(engine, tmp_path):
    december = amounts(run(QUARTERLY, tmp_path, "2011-12", engine))
    assert december["stop_loss"] == D("480.00")  # 80 % × (1,600 − 1,000); M2's 100 and the 5,000 with no member: 0
    assert amounts(run(QUARTERLY, tmp_path, "2011-11", engine))["stop_loss"] == D("0.00")  # paid in December
    q2 = amounts(run(QUARTERLY, tmp_path, "2011-Q2", engine))
    assert q2["claims"] == D("100.00")  # M2's June event, paid in June (the event without a member is nobody's)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_pool_paid_monthly_adds_up_to_the_pool(engine, tmp_path):
    year = run(QUARTERLY, tmp_path, "2011", engine)
    (bonus,) = [x for x in year.statements[0].lines if x.id == "bonus"]
    assert bonus.pool_amount == D("15.00") and bonus.amount == D("15.00")
    assert [i.amount for i in bonus.installments] == [D("1.25")] * 12
    assert [i.when for i in bonus.installments][:2] == ["January", "February"]
    assert [i.share for i in bonus.installments] == ["1/12"] * 12
    january = run(QUARTERLY, tmp_path, "2011-01", engine)
    (bonus,) = [x for x in january.statements[0].lines if x.id == "bonus"]
    assert bonus.amount == D("1.25") and [i.month for i in bonus.installments] == [1]


SETTLEMENT = """
contract "Settle":
    currency CZK
end

inputs:
    practice target: money
end

line capitation "Capitation" = sum of 100 CZK over members

pool bonus "Quality bonus":
    amount 10% of sum of capitation over year
    paid 50% in H1, rest in December
end

settlement limits "Annual cap and floor":
    total sum of capitation over year + bonus
    cap 4000 CZK
    floor 2000 CZK
end

settlement corridor "Risk corridor":
    total sum of capitation over year
    corridor around practice.target within 3% share 50%
    paid in June
end
"""


def settle(tmp_path, target: str, members: int, period: str, engine: str):
    (tmp_path / "members.csv").write_text(
        "member_id,practice_id,birth_date\n" + "".join(f"M{i},P1,1970-01-01\n" for i in range(members)), "utf-8")
    (tmp_path / "practices.csv").write_text(f"practice_id,target\nP1,{target}\n", "utf-8")
    program = compile_source(Source(SETTLEMENT, "t.cap"))[1]
    result, _ = run_pipeline(program, Run(files={"members": str(tmp_path / "members.csv"),
                                                 "practices": str(tmp_path / "practices.csv")},
                                          period=period, engine=engine, today=date(2012, 6, 1)))
    return amounts(result)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("members, target, limits, corridor", [
    (4, "4800", "-1280.00", "0.00"),  # paid 4,800 + 480: 1,280 over the cap; inside the corridor
    (1, "2000", "680.00", "370.00"),  # paid 1,200 + 120: 680 under the floor; 50 % × (1,940 − 1,200) made up
    (3, "3000", "0.00", "-255.00"),  # 3,960 paid is inside; the corridor's band 2,910–3,090: 50 % × 510 back
])
def test_a_settlement_holds_what_was_paid_to_its_terms(engine, tmp_path, members, target, limits, corridor):
    got = settle(tmp_path, target, members, "2011", engine)
    assert got["capitation"] == D(members * 1200)
    assert got["limits"] == D(limits)
    assert got["corridor"] == D(corridor)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_settlement_is_paid_in_its_month(engine, tmp_path):
    assert settle(tmp_path, "4800", 4, "2011-Q2", engine)["corridor"] == D("0.00")
    got = settle(tmp_path, "1000", 1, "2011-06", engine)  # 1,200 over 1,030: 50 % × 170 given back in June
    assert got["corridor"] == D("-85.00") and got["limits"] == D("0.00")  # the cap and floor are paid in December


DATED = """
contract "Dated":
    currency EUR
end

define rate:
    10 EUR from 2011-01-01
    11 EUR from 2012-01-01
    until 2012-12-31
end

line capitation "Capitation" = sum of rate over members
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_dated_value_that_ends_fails_after_its_last_day(engine, tmp_path):
    program = compile_source(Source(DATED, "t.cap"))[1]
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", "utf-8")

    def go(period):
        return run_pipeline(program, Run(files={"members": str(tmp_path / "members.csv")}, period=period,
                                         engine=engine, today=date(2014, 6, 1)))[0]

    assert amounts(go("2012-12"))["capitation"] == D("11.00")
    with pytest.raises(EvalError) as caught:
        go("2013-01")
    assert caught.value.code == "E0805" and "no value after 2012-12-31" in caught.value.diagnostics[0].message


@pytest.mark.parametrize("text, code", [
    ("contract \"t\":\n    currency EUR\n    list as of month_end\nend\n", "E0111"),
    ("contract \"t\":\n    currency EUR\nend\nline a \"A\":\n    amount 1 EUR\n    paid in June, June\nend\n", "E0503"),
    ("contract \"t\":\n    currency EUR\nend\npool a \"A\":\n    amount 1 EUR\n    rate per year\nend\n", "E0508"),
    ("contract \"t\":\n    currency EUR\nend\nline a \"A\":\n    amount 1 EUR\n    paid 50% in Q2, rest in Q4\nend\n",
     "E0108"),
    ("contract \"t\":\n    currency EUR\nend\nsettlement s \"S\":\n    total 1 EUR\nend\n", "E0509"),
    ("contract \"t\":\n    currency EUR\nend\ndefine r:\n    1 EUR from 2012-01-01\n    until 2011-12-31\nend\n"
     "line a \"A\" = sum of r over members\n", "E0409"),
])
def test_what_the_checker_refuses(text, code):
    with pytest.raises(CapError) as caught:
        compile_source(Source(text, "t.cap"))
    assert code in {d.code for d in caught.value.diagnostics}


V2_EXTRA = """
settlement limits "Annual cap and floor":
    total sum of global_sum over year + bonus
    cap 300 EUR
    floor 100 EUR
end

settlement corridor "Risk corridor":
    total sum of registration over year
    corridor around 100 EUR within 3% share 50%
    paid in June
end
"""


def v2_program_and_panel():
    """QUARTERLY with two settlements, and its panel as `sql_support.Panel` rows (for the SQL dialects)."""
    from sql_support import Panel

    prog = compile_source(Source(QUARTERLY + V2_EXTRA, "t.cap"))[1]
    panel = Panel(event_attrs={"amount": "decimal"})
    panel.practice("P1")
    for mid, born, start, end in (("M1", date(1970, 1, 1), date(2010, 1, 1), None),
                                  ("M2", date(1980, 5, 5), date(2011, 2, 15), None),
                                  ("M3", date(1990, 3, 3), date(2010, 1, 1), date(2011, 2, 10)),
                                  ("M4", date(1926, 2, 20), date(2010, 1, 1), None)):
        panel.member(mid, "P1", born, start, end)
    for mid, day, amount in (("M1", date(2011, 3, 1), 700), ("M1", date(2011, 11, 1), 900),
                             ("M2", date(2011, 6, 1), 100), (None, date(2011, 6, 1), 5000)):
        panel.event("P1", day, "X", member_id=mid, amount=D(amount))
    return prog, panel


def test_fmt_keeps_each_comment_once_when_it_reorders_the_new_clauses():
    from capdsl.language.fmt import format_source

    text = ('contract "C":\n    currency EUR\n    retroactive 6 months\n    list as of quarter_start\nend\n\n'
            'line a "A":\n    applies when true\n    amount sum of 10 EUR over members\n    # before rate\n'
            '    rate per quarter  # a rate\n    paid quarterly  # when\nend\n\n'
            'settlement s "S":\n    floor 1 EUR  # the floor\n    # the total\n    total sum of a over year\nend\n')
    out = format_source(Source(text, "t.cap"))
    for comment in ("# before rate", "# a rate", "# when", "# the floor", "# the total"):
        assert out.count(comment) == 1, (comment, out)
    assert out.index("list as of") < out.index("retroactive")  # the header's canonical order
    assert format_source(Source(out, "t.cap")) == out


def test_two_example_lines_of_members_of_one_practice_and_age_are_different_members(tmp_path):
    """Each engine counts both lines (the interpreter did; DuckDB refused their equal ids, E0706)."""
    from click.testing import CliRunner

    from capdsl.tools.cli import main

    contract = tmp_path / "t.cap"
    contract.write_text('contract "T":\n    currency EUR\nend\n\nline cap "Capitation" = sum of 10 EUR over members\n\n'
                        'example "two lines":\n    period 2011-03\n    2 members of P1 aged 40\n'
                        '    3 members of P1 aged 40\n    expect P1 cap = 50.00 EUR\nend\n', "utf-8")
    for engine in ENGINES:
        result = CliRunner().invoke(main, ["test", str(contract), "--engine", engine])
        assert result.exit_code == 0 and "1 passed" in result.output, result.output


def test_a_division_inside_a_members_event_total_compiles_beside_a_deferred_sum():
    """A division inside `over member events` raises in the totals' own query: the member sum around
    it has no failure to defer (the differential test found the compiler looking for one)."""
    from capdsl.evaluation import tree as t
    from capdsl.evaluation.interpret import evaluate as interpret
    from capdsl.evaluation.periods import parse_period
    from capdsl.sql import evaluate as sql_evaluate
    from sql_support import Panel, line, program

    points = t.Col("event", "points", "decimal")
    total = t.MemberEvents("sum", "month", t.Arith("/", points, points))
    # behind a condition, the member sum is not surely read: its failures would be deferred
    amount = t.Case(((t.Cmp(">", t.Col("practice", "hours", "decimal"), t.Const(D(0), "decimal")),
                      t.Agg("count", "events", None)),), t.Agg("sum", "members", total))
    prog = program([line("l0", amount)])
    panel = Panel(practice_attrs={"hours": "decimal"})
    panel.practice("P1", hours=D(0))
    panel.member("M1", "P1", date(1970, 1, 1))
    panel.event("P1", date(2011, 3, 2), "A", points=4, member_id="M1")
    per = parse_period("2011-03")
    got = sql_evaluate(prog, panel.duckdb(), per, {})
    assert got.rows == interpret(prog, panel.rows(), per.months, {}).rows
    assert got.rows[0][3] == D("1.00")  # no hours: M1's 4/4
