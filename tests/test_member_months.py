"""Every consumer of the member-month rules agrees on every member-month, on random contracts and panels.

`capdsl.evaluation.months` states which members count in a practice-month, at what age and for what
weight. Held against it: the SQL member-month query (`capdsl.sql.members.member_months`), `eval` on
the python and the DuckDB engine (per practice, line and month), `--detail member`
(`capdsl.evaluation.detail`), `explain --member` (`capdsl.tools.explain.explain_member`) and `diff`'s
restricted re-evaluation by member group (`capdsl.tools.impact.group_contributions`): the same
member-months, the same ages and weights, and contributions that add up to the same amounts.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdsl.errors import EvalError, Source
from capdsl.evaluation.amounts import CONTEXT, fix, round_to
from capdsl.evaluation.detail import member_aggregates, member_detail
from capdsl.evaluation.interpret import Tracer, collect_aggs, evaluate
from capdsl.evaluation.lower import source_text
from capdsl.evaluation.months import Rows, practice_months, run_plan
from capdsl.evaluation.periods import parse_period
from capdsl.pipeline import compile_source
from capdsl.sql import evaluate as sql_evaluate
from capdsl.tools.explain import explain_member
from capdsl.tools.impact import Grouper, group_contributions
from sql_support import Panel
from test_diff_groups import contracts, panels as member_panels
from test_sql_differential import PERIODS, outcome, panels as sql_panels, programs

D = Decimal
PERIOD_OF = {(3,): "2011-03", (1, 2, 3): "2011-Q1", tuple(range(1, 13)): "2011"}


def fresh(rows: Rows) -> Rows:
    """A copy: the driver writes each counted member's age into its row."""
    return Rows([dict(p) for p in rows.practices], [dict(m) for m in rows.members], [dict(e) for e in rows.events],
                list(rows.measures))


def driver_member_months(program, rows: Rows, months) -> dict[tuple, tuple[int, D]]:
    """(practice, member, month) → (age, weight), from `capdsl.evaluation.months`."""
    out = {}
    for frame in practice_months(program, fresh(rows), months):
        for row, w in zip(frame.members, frame.weights):
            key = (frame.practice["practice_id"], str(row["member_id"]), frame.month)
            assert key not in out
            assert row["age"] >= 0 and 0 < w <= 1
            out[key] = (row["age"], D(w))
    return out


def sql_member_months(program, panel: Panel, period) -> dict[tuple, tuple[int, D]]:
    from capdsl.sql.members import member_months

    return {(pid, str(mid), m): (age, D(w)) for pid, mid, m, age, w in member_months(program, panel.duckdb(), period)}


def detail_member_months(program, rows: Rows, months, source: Source):
    """(practice, member, month) → (age, weight, {aggregate text: weighted contribution})."""
    table = member_detail(program, fresh(rows), months, {}, describe=lambda agg: source_text(source, agg.origin))
    names = table.columns[5:]
    out = {}
    for pid, member, month, age, w, *values in table.rows:
        m = next(x for x in months if x.isoformat()[:7] == month)
        key = (pid, member, m)
        assert key not in out
        out[key] = (age, w, {table.aggregates[n]: v for n, v in zip(names, values)})
    return out


def explained_member_months(program, rows: Rows, months, source: Source):
    """The same, from `explain --member`, one member at a time (contributions weighted here)."""
    out = {}
    for member in rows.members:
        trail = explain_member(program, source, fresh(rows), months, {}, member["practice_id"], member["member_id"])
        for m, item in zip(months, trail["months"]):
            assert item["month"] == m.isoformat()[:7]
            w = D(item["weight"])
            if not w:
                continue
            values = {}
            for v in item["values"]:
                value = None if not v["included"] else D(v["value"])
                values[v["aggregate"]] = None if value is None else value if w == 1 else fix(CONTEXT.multiply(w, value))
            out[(member["practice_id"], str(member["member_id"]), m)] = (item["age"], w, values)
    return out


def as_sql_panel(rows: Rows) -> Panel:
    return Panel(members=[dict(m) for m in rows.members], practices=[dict(p) for p in rows.practices],
                 member_attrs={"chronic": "bool"})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=contracts(), rows=member_panels(2011), months=st.sampled_from(sorted(PERIOD_OF)))
def test_every_consumer_agrees_on_every_member_month(text, rows, months):
    """Lines that are sums over members: age, weight and contribution of each member-month are the
    same in the driver, the SQL member-months, detail, explain and diff, and they add up to the
    lines eval pays on both engines."""
    source = Source(text, "random.cap")
    _, program = compile_source(source)
    month_starts = parse_period(PERIOD_OF[months]).months
    want = driver_member_months(program, rows, month_starts)

    # the SQL query counts the same member-months, at the same ages and weights
    assert sql_member_months(program, as_sql_panel(rows), PERIOD_OF[months]) == want

    detail = detail_member_months(program, rows, month_starts, source)
    assert {k: v[:2] for k, v in detail.items()} == want
    explained = explained_member_months(program, rows, month_starts, source)
    assert explained == detail

    # eval on both engines pays, per practice-month and line, the rounded sum of the contributions
    python = evaluate(program, fresh(rows), month_starts, {})
    duck = sql_evaluate(program, as_sql_panel(rows).duckdb(), parse_period(PERIOD_OF[months]), {})
    assert (duck.rows, duck.pools, duck.installments, duck.practices) == \
        (python.rows, python.pools, python.installments, python.practices)
    aggregate_of = {name: source_text(source, agg.origin) for name, agg in member_aggregates(program, None)}
    assert set(aggregate_of) == {"capitation", "flat"}
    summed: dict[tuple, D] = defaultdict(D)
    for (pid, _, m), (_, _, values) in detail.items():
        for name, text_of in aggregate_of.items():
            summed[(pid, m, name)] += values[text_of] or D(0)
    for pid, m, name, amount, applied, _basis in python.rows:
        assert applied and amount == round_to(summed[(pid, m, name)], program.quantum, program.rounding_mode)
    for practice in rows.practices:  # unrounded: the tracer records one practice
        tracer = Tracer()
        evaluate(program, fresh(rows), month_starts, {}, tracer=tracer, only_practice=practice["practice_id"])
        for (m, name), (raw, *_rest) in tracer.lines.items():
            assert raw == summed[(practice["practice_id"], m, name)]

    # diff's groups: a group's member-months and its restricted amount are its members' weights and
    # contributions (grouped on the age the driver gives)
    grouper = Grouper(program, program)
    attrs = {row["member_id"]: dict(row) for row in rows.members}
    contrib, exposure = group_contributions(program, fresh(rows), month_starts, {}, grouper, attrs)
    by_id = {str(row["member_id"]): row for row in rows.members}
    want_exposure: dict[tuple, D] = defaultdict(D)
    want_contrib: dict[tuple, D] = defaultdict(D)
    for (pid, mid, m), (age, w, values) in detail.items():
        key = (grouper.band(age),) + tuple(bool(by_id[mid].get(f)) for f in grouper.flags)
        assert grouper.key(by_id[mid], m) == key
        want_exposure[key] += w
        for name, text_of in aggregate_of.items():
            want_contrib[(name, key)] += values[text_of] or D(0)
    assert dict(exposure) == dict(want_exposure)
    assert dict(contrib) == dict(want_contrib)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), sql_panels(), st.sampled_from(PERIODS))
def test_member_months_agree_on_random_programs_with_events_measures_and_pools(prog, panel, period):
    """The SQL differential test's programs: the run months of a pool year included, the SQL query
    and the driver count the same member-months; detail and explain see them at the same ages and
    weights, with the same contributions; an aggregate's traced groups add up to its members'."""
    per = parse_period(period)
    rows = panel.rows()
    plan = run_plan(prog, per.months)
    assert sql_member_months(prog, panel, per) == driver_member_months(prog, rows, plan.run)
    want = driver_member_months(prog, rows, per.months)
    source = Source("", "t.cap")
    params = {"k": D(3)}
    try:
        table = member_detail(prog, fresh(rows), per.months, params)
    except EvalError:
        with pytest.raises(EvalError):  # a member fails in some aggregate: explain fails on it too
            for member in rows.members:
                explain_member(prog, source, fresh(rows), per.months, params, member["practice_id"],
                               member["member_id"])
        return
    detail = {(pid, member, next(m for m in per.months if m.isoformat()[:7] == month)): (age, w, tuple(values))
              for pid, member, month, age, w, *values in table.rows}
    assert {k: v[:2] for k, v in detail.items()} == want
    names = table.columns[5:]
    for member in rows.members:
        try:
            trail = explain_member(prog, source, fresh(rows), per.months, params, member["practice_id"],
                                   member["member_id"])
        except EvalError:  # explain also evaluates the aggregates of conditions and bases, which may fail
            continue
        for m, item in zip(per.months, trail["months"]):
            key = (member["practice_id"], member["member_id"], m)
            if key not in want:
                assert D(item["weight"]) == 0
                continue
            assert (item["age"], D(item["weight"])) == want[key]
    # the interpreter's traced member groups of each aggregate add up to detail's contributions
    aggs = {id(a): a for a in collect_aggs(prog)[0] if a.source == "members"}
    column_of = {}
    for name, agg in member_aggregates(prog, lambda a: ""):
        column_of[id(agg)] = names.index(name)
    for practice in rows.practices:
        tracer = Tracer()
        try:
            evaluate(prog, fresh(rows), per.months, params, tracer=tracer, only_practice=practice["practice_id"])
        except EvalError:
            continue
        for (m, agg_id), groups in tracer.groups.items():
            if agg_id not in aggs or agg_id not in column_of or m not in per.months:
                continue
            total = sum((g.subtotal for g in groups), D(0))
            members = sum((v[2][column_of[agg_id]] or D(0) for (pid, _, mm), v in detail.items()
                           if pid == practice["practice_id"] and mm == m), D(0))
            assert total == members


MEASURED = """\
contract "Measured":
    currency CZK
end

inputs:
    measure factor: number = 1
end

line capitation "Capitation" = sum of 10 CZK * measure.factor over members
"""


def test_explain_member_sees_the_practice_months_measures():
    """A member-level value that reads a measure: explain --member sees the practice's measure for
    the month, as eval and --detail member do (and the default in a month without one)."""
    from datetime import date

    source = Source(MEASURED, "measured.cap")
    _, program = compile_source(source)
    rows = Rows([{"practice_id": "P1"}],
                [{"member_id": "M1", "practice_id": "P1", "birth_date": date(1970, 5, 5), "enrolled_from": None,
                  "enrolled_to": None, "_row": 2, "_label": "M1"}],
                [], [("P1", "2011-03", "factor", D(2))])
    months = parse_period("2011-Q1").months
    trail = explain_member(program, source, fresh(rows), months, {}, "P1", "M1")
    (at,) = [i for i, a in enumerate(a for a in collect_aggs(program)[0] if a.source == "members") if a.kind == "sum"]
    assert [D(m["values"][at]["value"]) for m in trail["months"]] == [D(10), D(10), D(20)]
    detail = member_detail(program, fresh(rows), months, {})
    assert [r[5] for r in detail.rows] == [D(10), D(10), D(20)]
    assert [r[3] for r in evaluate(program, fresh(rows), months, {}).rows] == [D(10), D(10), D(20)]


def test_the_run_plan_of_a_period_with_pools_due():
    """A period with a pool installment in it: every month of the year runs, the period's months are
    reported, and the other months evaluate only the lines a year sum reads. A period without one
    runs its own months."""
    from datetime import date

    from capdsl.evaluation import tree as t
    from sql_support import c, line, program as build

    pool = line("pool", t.YearSum(t.LineRef("cap")), kind="pool",
                installments=(t.Installment(5, D("0.5")), t.Installment(12, None)))
    prog = build([line("cap", c(1)), line("other", c(2)), pool])
    plan = run_plan(prog, parse_period("2011-Q2").months)
    assert plan.run == tuple(date(2011, m, 1) for m in range(1, 13)) and plan.due == (5,) and plan.pools_due
    assert not run_plan(prog, parse_period("2011-Q3").months).pools_due  # nothing paid July–September
    assert plan.reported == (date(2011, 4, 1), date(2011, 5, 1), date(2011, 6, 1))
    assert plan.evaluates("cap", date(2011, 1, 1)) and not plan.evaluates("other", date(2011, 1, 1))
    assert plan.reports(date(2011, 5, 1)) and not plan.reports(date(2011, 7, 1))
    plain = run_plan(build([line("cap", c(1))]), parse_period("2011-05").months)
    assert plain.run == (date(2011, 5, 1),) and not plain.pools_due


def test_a_practice_month_sees_the_months_measure_then_the_quarters_then_the_years():
    from datetime import date

    from capdsl.evaluation.months import visible_measure

    periods = {"2011": 1, "2011-Q2": 2, "2011-05": 3}
    assert [visible_measure(periods, date(2011, m, 1), False) for m in (3, 4, 5)] == [1, 2, 3]
    assert visible_measure(periods, date(2011, 5, 1), True) == 1
    assert visible_measure({}, date(2011, 5, 1), False) is None
