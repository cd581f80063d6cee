"""The small statement panel the output tests share (JSON, CSV and table, .xlsx, HTML and PDF): a
CZK contract reported in EUR with a capitation, a supplement, a deduction and a half-yearly bonus,
members at practices with hostile names. Each test module states its own contract body and rows;
this module holds what they have in common."""

from __future__ import annotations

from pathlib import Path

#: The header terms after the title: a month period, ages and lists on the month's first day,
#: rounding per line, and a second currency for the statements.
HEADER = '''    currency CZK
    period month
    age as of month_start
    exposure first_day
    rounding half_up 0.01 per line
    report in EUR at 25.28 CZK per EUR
end
'''

#: The regulation line and the quality bonus paid in two installments, the last only when the
#: quality measure is present (`between` them: more lines).
DEDUCTION_AND_BONUS = '''line regulation "{regulation}":
    amount -1 CZK * count of members
end
{between}
pool bonus "Quality bonus":
    amount 1200 CZK
    paid 50% in Q2, rest in Q4 when measure.quality is present{bonus_ref}
end
'''

MEASURES = """practice_id,period,measure,value
P1,2011,quality,90%
"""


def contract(title: str, body: str, *, regulation: str = "Drug-cost regulation (deduction)", between: str = "",
             bonus_ref: str = "") -> str:
    """The contract text: the title, HEADER, `body` (inputs, definitions, the first lines), then
    DEDUCTION_AND_BONUS."""
    bonus_ref = f'\n    ref "{bonus_ref}"' if bonus_ref else ""
    return (f'contract "{title}":\n' + HEADER + "\n" + body
            + DEDUCTION_AND_BONUS.format(regulation=regulation, between=between and f"\n{between}",
                                         bonus_ref=bonus_ref))


def write_panel(folder: Path, contract_text: str, members: str, practices: str,
                measures: str = MEASURES) -> Path:
    """The contract as c.cap and the tables as members.csv, practices.csv and measures.csv."""
    for name, text in (("c.cap", contract_text), ("members.csv", members), ("practices.csv", practices),
                       ("measures.csv", measures)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def eval_argv(folder: Path, *more: str, contract: str = "c.cap") -> list[str]:
    """`capdsl eval` on the folder's contract and tables, quietly."""
    return ["eval", str(folder / contract), "--members", str(folder / "members.csv"), "--practices",
            str(folder / "practices.csv"), "--measures", str(folder / "measures.csv"), "--quiet", *more]
