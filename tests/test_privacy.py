"""Member privacy: member ids and birth dates are health data.

Errors and warnings name a member by row number and a short hash
(`id:3f9a2c`) unless `--show-ids` is given; birth dates are never printed by
default; `capdsl explain --redact` hashes member ids in the audit trail.
Checked through the CLI on the python and duckdb engines.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main
from capdsl.data.panel import redact_id

SECRET = "M_SECRET_4711"
SECRET_BIRTH = "1977-07-17"
HASHED = redact_id(SECRET)

CONTRACT = """\
contract "privacy":
    currency CZK
end

inputs:
    member risk: number = 1
end

bands risk_factor by member.risk:
    0 and over: 1
end

line capitation "Capitation" = sum of risk_factor * 10 CZK over members
"""


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


def _write(tmp: Path, members: str, events: str | None = None) -> list[str]:
    (tmp / "c.cap").write_text(CONTRACT, encoding="utf-8")
    (tmp / "members.csv").write_text(members, encoding="utf-8")
    args = ["--members", str(tmp / "members.csv")]
    if events is not None:
        (tmp / "events.csv").write_text(events, encoding="utf-8")
        args += ["--events", str(tmp / "events.csv")]
    return args


def _eval(tmp: Path, args: list[str], engine: str, *extra: str):
    return CliRunner().invoke(main, ["eval", str(tmp / "c.cap"), *args, "--period", "2011-03", "--engine", engine,
                                     "--format", "csv", *extra], catch_exceptions=False)


GOOD = f"member_id,practice_id,birth_date,risk\nM1,P1,1970-01-01,1\n{SECRET},P1,{SECRET_BIRTH},1\n"

CASES = {
    # name: (members, events, expected code)
    "duplicate id": (GOOD + f"{SECRET},P1,1980-01-01,1\n", None, "E0706"),
    "future birth date": (GOOD.replace(SECRET_BIRTH, "2990-01-01"), None, "E0708"),
    "aged 110 or over (warning)": (GOOD.replace(SECRET_BIRTH, "1890-01-01"), None, "W0714"),
    "event of an unknown member (warning)": (GOOD.replace(SECRET, "M2"),
                                             f"practice_id,member_id,date,code\nP1,{SECRET},2011-03-02,X\n",
                                             "W0715"),
    "member in no band (runtime)": (GOOD.replace(f"{SECRET_BIRTH},1", f"{SECRET_BIRTH},-1"), None, "E0801"),
}


def _engine_param(name: str):
    if name != "spark":
        return name

    def skip_reason():
        from capdsl.sql.spark_engine import available
        return available()
    return pytest.param("spark", marks=[pytest.mark.spark,
                                        pytest.mark.skipif(skip_reason() is not None, reason="no Spark")])


@pytest.mark.parametrize("engine", ["python", "duckdb"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_member_ids_are_hashed_by_default_and_shown_with_show_ids(tmp_path, name, engine):
    members, events, code = CASES[name]
    args = _write(tmp_path, members, events)
    hidden = _stderr(_eval(tmp_path, args, engine))
    assert f"[{code}]" in hidden, hidden
    assert SECRET not in hidden, hidden
    assert HASHED in hidden, hidden
    assert SECRET_BIRTH not in hidden and "2990-01-01" not in hidden and "1890-01-01" not in hidden
    assert "internal error" not in hidden
    shown = _stderr(_eval(tmp_path, args, engine, "--show-ids"))
    assert f"[{code}]" in shown
    assert SECRET in shown, shown


def test_a_bad_birth_date_value_is_not_echoed(tmp_path):
    args = _write(tmp_path, GOOD.replace(SECRET_BIRTH, "17/07/1977"))
    hidden = _stderr(_eval(tmp_path, args, "python"))
    assert "[E0704]" in hidden and "17/07/1977" not in hidden and "hidden" in hidden
    shown = _stderr(_eval(tmp_path, args, "python", "--show-ids"))
    assert "17/07/1977" in shown


def test_redacted_ids_are_short_stable_hashes():
    assert HASHED == "id:" + hashlib.sha256(SECRET.encode()).hexdigest()[:6]
    assert redact_id(SECRET) == redact_id(SECRET)
    assert redact_id(SECRET, show_ids=True) == repr(SECRET)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_explain_redact_hashes_member_ids(tmp_path, fmt):
    args = _write(tmp_path, GOOD)
    base = ["explain", str(tmp_path / "c.cap"), *args, "--period", "2011-03", "--practice", "P1",
            "--member", SECRET, "--format", fmt]
    plain = CliRunner().invoke(main, base, catch_exceptions=False)
    assert plain.exit_code == 0, plain.output
    assert SECRET in plain.output
    redacted = CliRunner().invoke(main, base + ["--redact"], catch_exceptions=False)
    assert redacted.exit_code == 0, redacted.output
    assert SECRET not in redacted.output
    assert SECRET_BIRTH not in redacted.output
    assert hashlib.sha256(SECRET.encode()).hexdigest()[:10] in redacted.output


@pytest.mark.parametrize("engine", [_engine_param("spark")])
def test_spark_runtime_error_names_the_member_by_hash(tmp_path, engine):
    """The SQL engines report a failing member by file row; the label is the member's id, hashed
    (regression: the row number itself was hashed, and shown as the id with --show-ids)."""
    members, events, code = CASES["member in no band (runtime)"]
    args = _write(tmp_path, members, events)
    hidden = _stderr(_eval(tmp_path, args, engine))
    assert f"[{code}]" in hidden and HASHED in hidden and SECRET not in hidden, hidden
    assert SECRET in _stderr(_eval(tmp_path, args, engine, "--show-ids"))
