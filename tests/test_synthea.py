"""Synthea -> members panel: both real exports, the edge cases, determinism, errors."""

from __future__ import annotations

import csv
import hashlib
from datetime import date
from pathlib import Path

import pytest

from capdsl.errors import InputError, UsageError
from capdsl.data.panel import ColumnSpec, Requirements, load_panel
from capdsl.data.synthea import from_synthea

DATA = Path(__file__).parent / "data" / "synthea"
AS_OF = date(2011, 1, 1)
REQ = Requirements(members=[ColumnSpec("diabetes", "bool", True, None, "t.cap:1"),
                            ColumnSpec("cardiovascular", "bool", True, None, "t.cap:2")])


def convert(tmp_path, folder, ext="csv", **kw):
    kw.setdefault("as_of", AS_OF)
    out = tmp_path / f"{folder}.{ext}"
    report = from_synthea(DATA / folder / "patients.csv", DATA / folder / "conditions.csv", out, **kw)
    return out, report


def members_of(out: Path) -> dict[str, dict]:
    ext = out.suffix
    panel = load_panel({"members": out, "practices": out.with_name(out.stem + ".practices" + ext)}, REQ,
                       today=date(2026, 1, 1))
    cols = ["member_id", "practice_id", "birth_date", "sex", "enrolled_from", "enrolled_to", "diabetes",
            "cardiovascular"]
    return {r[0]: dict(zip(cols, r)) for r in panel.member_rows(cols)}


@pytest.mark.parametrize("folder", ["ohdsi_dbt", "unmc_ne"])
def test_real_exports(tmp_path, folder):
    with open(DATA / folder / "patients.csv", newline="", encoding="utf-8") as fh:
        patients = list(csv.DictReader(fh))
    out, report = convert(tmp_path, folder)
    born = [p for p in patients if date.fromisoformat(p["BIRTHDATE"]) <= AS_OF]
    assert report.patients_read == len(patients)
    assert report.members_written == len(born)
    assert report.not_yet_born == len(patients) - len(born) > 0
    assert report.deceased_before_as_of == sum(1 for p in born if p["DEATHDATE"]
                                               and date.fromisoformat(p["DEATHDATE"]) < AS_OF)
    members = members_of(out)
    assert len(members) == report.members_written
    assert sum(m["diabetes"] for m in members.values()) == report.diabetes
    assert sum(m["cardiovascular"] for m in members.values()) == report.cardiovascular
    for p in born:
        m = members[p["Id"]]
        assert m["birth_date"] == m["enrolled_from"] == date.fromisoformat(p["BIRTHDATE"])
        assert m["enrolled_to"] == (date.fromisoformat(p["DEATHDATE"]) if p["DEATHDATE"] else None)
        assert m["sex"] == p["GENDER"]
        n = int(hashlib.sha256(p["Id"].encode()).hexdigest()[:15], 16) % 10 + 1
        assert m["practice_id"] == f"P{n:02d}"


def test_unmc_flags(tmp_path):
    """Hand-checked on the UNMC export: prediabetes alone never sets diabetes."""
    out, report = convert(tmp_path, "unmc_ne", as_of=date(2023, 1, 1))
    with open(DATA / "unmc_ne" / "conditions.csv", newline="", encoding="utf-8") as fh:
        conds = list(csv.DictReader(fh))

    def active(c):
        return c["START"][:10] <= "2023-01-01" and (not c["STOP"] or c["STOP"][:10] >= "2023-01-01")

    pre = {c["PATIENT"] for c in conds if active(c) and c["DESCRIPTION"] == "Prediabetes"}
    dia = {c["PATIENT"] for c in conds if active(c) and "diabetes mellitus" in c["DESCRIPTION"].lower()}
    members = members_of(out)
    assert pre - dia, "the export should have prediabetic patients without diabetes"
    for pid in pre - dia:
        if pid in members:
            assert members[pid]["diabetes"] is False
    assert {k for k, m in members.items() if m["diabetes"]} == dia & set(members)
    assert report.diabetes == len(dia & set(members)) > 0


def test_edge_cases(tmp_path):
    out, report = convert(tmp_path, "edge", practices=3)
    m = members_of(out)
    assert "i-not-yet-born" not in m and report.not_yet_born == 1
    assert "j-born-on-as-of" in m
    assert m["a-prediabetes"]["diabetes"] is False
    assert m["b-diabetes-stopped"]["diabetes"] is False
    assert m["c-diabetes-later"]["diabetes"] is False
    assert m["f-stop-on-as-of"]["diabetes"] is True  # STOP is inclusive
    assert m["k-type1-by-keyword"]["diabetes"] is True
    assert m["d-hypertension"]["cardiovascular"] is True
    assert m["e-gestational"]["diabetes"] is False and m["e-gestational"]["cardiovascular"] is False
    assert m["g-dead-before"]["enrolled_to"] == date(2005, 6, 30) and m["g-dead-before"]["cardiovascular"]
    assert m["h-dead-after"]["enrolled_to"] == date(2012, 2, 29)
    assert (report.deceased_before_as_of, report.deceased_after_as_of) == (1, 1)
    assert {v["practice_id"] for v in m.values()} <= {"P1", "P2", "P3"}


def test_parquet_equals_csv_and_output_is_deterministic(tmp_path):
    a, _ = convert(tmp_path, "unmc_ne", "csv")
    first = a.read_bytes()
    b, _ = convert(tmp_path, "unmc_ne", "parquet")
    assert members_of(a) == members_of(b)
    a2, _ = convert(tmp_path, "unmc_ne", "csv")
    assert a2.read_bytes() == first


def test_practices_table_and_attributes(tmp_path):
    out, report = convert(tmp_path, "ohdsi_dbt", practices=4,
                          practice_attrs={"weekly_hours": 30, "kind": {"P1": "adult", "P2": "mixed"}})
    rows = list(csv.DictReader(open(report.practices_path, newline="")))
    assert [r["practice_id"] for r in rows] == ["P1", "P2", "P3", "P4"]
    assert [r["weekly_hours"] for r in rows] == ["30"] * 4
    assert [r["kind"] for r in rows] == ["adult", "mixed", "", ""]
    assert report.practices_path == str(tmp_path / "ohdsi_dbt.practices.csv")
    assert "members written" in "\n".join(report.lines())
    assert report.to_dict()["as_of"] == "2011-01-01"


def test_errors(tmp_path):
    with pytest.raises(InputError) as info:
        from_synthea(tmp_path / "nope.csv", None, tmp_path / "o.csv", as_of=AS_OF)
    assert info.value.code == "E0701"
    bad = tmp_path / "patients.csv"
    bad.write_text("Id,BIRTHDATE\n1,2000-01-01\n")
    with pytest.raises(InputError) as info:
        from_synthea(bad, None, tmp_path / "o.csv", as_of=AS_OF)
    assert {d.code for d in info.value.diagnostics} == {"E0703"}
    with pytest.raises(UsageError):
        from_synthea(DATA / "edge" / "patients.csv", None, tmp_path / "o.xlsx", as_of=AS_OF)
    dup = tmp_path / "dup.csv"
    dup.write_text("Id,BIRTHDATE,DEATHDATE,GENDER\n1,2000-01-01,,F\n1,2000-01-01,,F\n2,not-a-date,,M\n")
    with pytest.raises(InputError) as info:
        from_synthea(dup, None, tmp_path / "o.csv", as_of=AS_OF)
    assert {d.code for d in info.value.diagnostics} == {"E0704", "E0706"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("o.") or p.name.startswith(".o.")] == []


def test_without_conditions_all_flags_are_false(tmp_path):
    out = tmp_path / "m.csv"
    report = from_synthea(DATA / "edge" / "patients.csv", None, out, as_of=AS_OF)
    assert report.diabetes == report.cardiovascular == report.conditions_read == 0


def test_licence_notices_are_kept():
    for folder, licence in (("ohdsi_dbt", "Apache License"), ("unmc_ne", "MIT License")):
        assert licence in (DATA / folder / "LICENSE").read_text()
        assert "commit" in (DATA / folder / "NOTICE").read_text()


@pytest.mark.parametrize("folder", ["ohdsi_dbt", "unmc_ne"])
def test_cli_panel_from_synthea_then_eval_polish_contract(tmp_path, folder):
    """The whole path a user takes: Synthea export -> panel -> statements (both schema versions)."""
    import json

    from click.testing import CliRunner

    from capdsl.tools.cli import main

    out = tmp_path / "panel.parquet"
    runner = CliRunner()
    made = runner.invoke(main, ["panel", "from-synthea", str(DATA / folder / "patients.csv"),
                                str(DATA / folder / "conditions.csv"), "-o", str(out), "--as-of", "2011-01-01",
                                "--practices", "3", "--json"])
    assert made.exit_code == 0, made.output
    report = json.loads(made.output)
    assert report["members_written"] + report["not_yet_born"] == report["patients_read"]
    assert out.exists() and (tmp_path / "panel.practices.parquet").exists()
    contract = Path(__file__).resolve().parent.parent / "contracts" / "pl_poz.cap"
    result = runner.invoke(main, ["eval", str(contract), "--members", str(out), "--period", "2011-01",
                                  "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    statements = json.loads(result.stdout)["statements"]
    assert {s["practice_id"] for s in statements} <= {"P1", "P2", "P3"}


def test_cli_panel_from_synthea_bad_date_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from capdsl.tools.cli import main

    result = CliRunner().invoke(main, ["panel", "from-synthea", str(DATA / "edge" / "patients.csv"), "-o",
                                       str(tmp_path / "m.csv"), "--as-of", "2011-02-30"])
    assert result.exit_code == 1
    assert "E0915" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.csv").exists()
