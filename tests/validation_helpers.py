"""Shared fixtures for the payer-validation tests (diff, report, testgen, dated terms):
small contracts and a small deterministic panel written as CSV."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from capdsl.errors import Source

BASE = """
contract "Test GP 2011":
    currency CZK
end

inputs:
    practice weekly_hours: hours
    member diabetes: bool = false
    event points: points = 0 points
end

bands age_index by member.age:
    0 to 17: 1.50
    18 to 64: 1.00
    65 and over: 2.00
end

tier base_rate:
    50 CZK when practice.weekly_hours >= 30 hours
    45 CZK otherwise
end

modifier chronic combine highest:
    1.20 when member.diabetes
    1.00 otherwise
end

define point_value = 1.00 CZK per point

line capitation "Capitation" = sum of base_rate * age_index * chronic over members
line services "Services" = sum of event.points * point_value over events
"""


def variant(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# BASE in euros at 25 CZK per EUR: the same contract, so a diff at --rate 25 is 0
BASE_EUR = variant(BASE, ("currency CZK", "currency EUR"), ("50 CZK", "2 EUR"), ("45 CZK", "1.80 EUR"),
                   ("1.00 CZK per point", "0.04 EUR per point"))


def compile_text(text: str, path: str = "t.cap"):
    """(checked, program) through the real checker, as the CLI compiles."""
    from capdsl.pipeline import compile_source

    return compile_source(Source(text, path))


def compile_path(path) -> tuple:
    from capdsl.pipeline import compile_file

    return compile_file(path)


def write_panel(root: Path, members: int = 60, practices: int = 3) -> dict[str, str]:
    """A deterministic panel: ages 1..95 spread over practices, every 4th member diabetic,
    practice k open 25 + 5k hours, one event per third member in March."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "members.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_id", "practice_id", "birth_date", "enrolled_from", "enrolled_to", "diabetes"])
        for i in range(members):
            age = 1 + (i * 37) % 95
            w.writerow([f"M{i:04d}", f"P{i % practices}", date(2011 - age - 1, 6, 15).isoformat(), "", "",
                        "true" if i % 4 == 0 else "false"])
    with open(root / "practices.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["practice_id", "weekly_hours"])
        for k in range(practices):
            w.writerow([f"P{k}", 25 + 5 * k])
    with open(root / "events.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["practice_id", "member_id", "date", "code", "points", "quantity"])
        for i in range(0, members, 3):
            w.writerow([f"P{i % practices}", f"M{i:04d}", "2011-03-10", "VISIT", 100 + i, 1])
    return {name: str(root / f"{name}.csv") for name in ("members", "practices", "events")}


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)
