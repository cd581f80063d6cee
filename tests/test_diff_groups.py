"""`diff`'s member-group re-evaluation agrees with `eval` on random contracts and panels.

For a line that is a sum over members, the restricted re-evaluations of the
member groups add up exactly to the line before rounding, and every member
lands in the age band `eval` gives it: under every age rule and exposure
rule, newborns of the evaluated year included.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdsl.tools.impact import Grouper, group_contributions
from capdsl.errors import Source
from capdsl.evaluation.interpret import Rows, Tracer, evaluate
from capdsl.evaluation.months import member_age
from capdsl.pipeline import compile_source

AGE_RULES = ["month_start", "month_end", "year_start"]
EXPOSURES = ["first_day", "pro_rata", "any_day"]


@st.composite
def contracts(draw):
    rule, exposure = draw(st.sampled_from(AGE_RULES)), draw(st.sampled_from(EXPOSURES))
    cuts = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=5)))
    bands, low = [], 0
    for cut in cuts:
        bands.append(f"    {low} to {cut - 1}: {draw(st.integers(1, 400)) / 100}")
        low = cut
    bands.append(f"    {low} and over: {draw(st.integers(1, 400)) / 100}")
    flag = draw(st.booleans())
    where = " where member.chronic" if flag else ""
    # without an age-band table, diff groups by 10-year bands of the age eval computes
    index = "index" if draw(st.booleans()) else f"(if member.age < {cuts[0]} then 2 else 1)"
    return f"""\
contract "random":
    currency CZK
    age as of {rule}
    exposure {exposure}
end

inputs:
    member chronic: bool = false
end

bands index by member.age:
{chr(10).join(bands)}
end

line capitation "Capitation" = sum of 47 CZK * {index} over members{where}
line flat "Flat" = sum of 3.5 CZK over members
"""


@st.composite
def panels(draw, year: int):
    n = draw(st.integers(1, 12))
    members = []
    for i in range(n):
        if draw(st.booleans()):  # a newborn of the evaluated year, or a member born just before it
            born = date(year, 1, 1) + timedelta(days=draw(st.integers(-40, 300)))
        else:
            born = date(draw(st.integers(1910, year - 1)), draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        start = draw(st.one_of(st.none(), st.dates(date(year - 1, 6, 1), date(year, 12, 31))))
        end = draw(st.one_of(st.none(), st.dates(date(year, 1, 1), date(year + 1, 3, 1))))
        members.append({"member_id": f"M{i}", "practice_id": f"P{i % 2}", "birth_date": born,
                        "enrolled_from": start, "enrolled_to": end, "chronic": draw(st.booleans()),
                        "_row": i + 2, "_label": f"M{i}"})
    return Rows([{"practice_id": "P0"}, {"practice_id": "P1"}], members)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=contracts(), rows=panels(2011), months=st.sampled_from([(3,), (1, 2, 3), tuple(range(1, 13))]))
def test_group_re_evaluation_adds_up_to_eval_and_uses_evals_ages(text, rows, months):
    _, program = compile_source(Source(text, "random.cap"))
    month_starts = tuple(date(2011, m, 1) for m in months)
    raw = {"capitation": Decimal(0), "flat": Decimal(0)}
    for practice in rows.practices:  # a tracer records one practice's steps
        tracer = Tracer()
        evaluate(program, rows, month_starts, {}, tracer=tracer, only_practice=practice["practice_id"])
        for (m, line), traced in tracer.lines.items():
            raw[line] += traced[0]
    grouper = Grouper(program, program)
    attrs = {row["member_id"]: dict(row) for row in rows.members}
    contrib, _ = group_contributions(program, rows, month_starts, {}, grouper, attrs)
    for line in ("capitation", "flat"):
        groups = sum((v for (name, _), v in contrib.items() if name == line), Decimal(0))
        assert groups == raw[line], (line, groups, raw[line])
    for row in rows.members:
        for m in month_starts:
            age = member_age(program.age_rule, m, row["birth_date"])
            assert age >= 0
            assert grouper.key(row, m)[0] == grouper.band(age)
            assert not grouper.key(row, m)[0].startswith("-")
