"""The Da Vinci ATR reader (capdsl/data/fhir_atr.py): the bundled sample's exact rows and rejections,
broken lines and resources reported with their positions, the mapping rules one by one, the
`panel from-atr` command end to end, and a contract run on what it writes."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fhir.resources")

from capdsl.data.fhir_atr import (  # noqa: E402
    EXT_ATTRIBUTED_PROVIDER, EXT_COVERAGE_REFERENCE, NPI_SYSTEM, TIN_SYSTEM, V2_0203, from_atr, read_attribution,
)
from capdsl.errors import CapError  # noqa: E402
from capdsl.tools.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "fhir_atr"
TODAY = date(2026, 1, 1)
GROUP = "Group/atr-summit-2011"

SAMPLE_ROWS = [
    {"member_id": "M1001", "practice_id": "1234567893", "birth_date": date(1956, 4, 12), "sex": "F",
     "enrolled_from": date(2010, 7, 1), "enrolled_to": date(2011, 12, 31)},
    {"member_id": "M1002", "practice_id": "1234567893", "birth_date": date(1948, 11, 3), "sex": "M",
     "enrolled_from": date(2011, 1, 1), "enrolled_to": None},
    {"member_id": "M1003", "practice_id": "1456789019", "birth_date": date(1979, 7, 21), "sex": "F",
     "enrolled_from": date(2011, 1, 1), "enrolled_to": date(2011, 2, 28)},
    # no Group.member.period: the Coverage's period; the organisation has a TIN only
    {"member_id": "M1004", "practice_id": "473456789", "birth_date": date(1990, 1, 30), "sex": "M",
     "enrolled_from": date(2011, 1, 1), "enrolled_to": date(2011, 12, 31)},
    # the member number is on the Coverage only
    {"member_id": "M1006", "practice_id": "1456789019", "birth_date": date(2009, 9, 15), "sex": "F",
     "enrolled_from": date(2011, 1, 1), "enrolled_to": date(2011, 12, 31)},
    # attributed to a Practitioner (NPI); gender "unknown" -> empty sex
    {"member_id": "M1007", "practice_id": "1678901236", "birth_date": date(1972, 5, 5), "sex": None,
     "enrolled_from": date(2011, 1, 1), "enrolled_to": date(2011, 12, 31)},
]

SAMPLE_REJECTED = [
    ("Patient.ndjson line 5", "invalid Patient: birthDate: Input should be a valid date or datetime, day value "
                              "is outside expected range"),
    (f"{GROUP} member 5", "the member's Patient/pat-1005 is invalid (Patient.ndjson line 5)"),
    (f"{GROUP} member 8", "skipped: the member is marked inactive (Group.member.inactive = true)"),
    (f"{GROUP} member 9", "no attributed provider (extension ext-attributedProvider)"),
]

CSV_TEXT = """member_id,practice_id,birth_date,sex,enrolled_from,enrolled_to
M1001,1234567893,1956-04-12,F,2010-07-01,2011-12-31
M1002,1234567893,1948-11-03,M,2011-01-01,
M1003,1456789019,1979-07-21,F,2011-01-01,2011-02-28
M1004,473456789,1990-01-30,M,2011-01-01,2011-12-31
M1006,1456789019,2009-09-15,F,2011-01-01,2011-12-31
M1007,1678901236,1972-05-05,,2011-01-01,2011-12-31
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="capdsl", catch_exceptions=False)


# ─────────────────────────────── the sample ───────────────────────────────

def test_sample_rows_are_exact():
    reading = read_attribution(SAMPLE, today=TODAY)
    assert list(reading.members) == SAMPLE_ROWS
    assert reading.groups == 1 and reading.group_members == 9 and reading.members_rejected == 3
    assert reading.resources == {"Group": 1, "Patient": 8, "Coverage": 9, "Organization": 4, "Practitioner": 1}
    assert reading.patients_not_in_group == 0
    assert reading.warnings == ()


def test_sample_rejections_have_positions_and_reasons():
    assert list(read_attribution(SAMPLE, today=TODAY).rejected) == SAMPLE_REJECTED


def test_sample_is_valid_fhir_except_the_deliberate_fault():
    """Every resource of the sample validates with fhir.resources, except Patient line 5 (30 February)."""
    from fhir.resources.R4B import get_fhir_model_class

    failures = []
    for f in sorted(SAMPLE.glob("*.ndjson")):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            obj = json.loads(line)
            try:
                get_fhir_model_class(obj["resourceType"]).model_validate(obj)
            except Exception:
                failures.append(f"{f.name} line {n}")
    assert failures == ["Patient.ndjson line 5"]


# ─────────────────────────────── broken files ───────────────────────────────

def copy_sample(tmp_path: Path) -> Path:
    dest = tmp_path / "export"
    shutil.copytree(SAMPLE, dest)
    return dest


def test_a_line_that_is_not_json_is_reported_with_its_line_number(tmp_path):
    export = copy_sample(tmp_path)
    with open(export / "Patient.ndjson", "a", encoding="utf-8") as fh:
        fh.write('{"resourceType": "Patient", "id": "pat-2000",\n')  # a line cut short
        fh.write("\n")  # a blank line is skipped, not counted as a resource
        fh.write("[1, 2]\n")
    with open(export / "Coverage.ndjson", "ab") as fh:
        fh.write(b'{"resourceType": "Coverage", "id": "cov-\xe9"}\n')
    reading = read_attribution(export, today=TODAY)
    assert list(reading.members) == SAMPLE_ROWS
    assert ("Patient.ndjson line 10", "not JSON: Expecting property name enclosed in double quotes (column 46)"
            ) in reading.rejected
    assert ("Patient.ndjson line 12", "not a JSON object (a FHIR resource)") in reading.rejected
    assert ("Coverage.ndjson line 10", "not UTF-8 text (byte 0xe9 at column 41)") in reading.rejected
    assert len(reading.rejected) == len(SAMPLE_REJECTED) + 3


def test_library_validation_errors_are_summarised_per_resource(tmp_path):
    export = copy_sample(tmp_path)
    lines = (export / "Organization.ndjson").read_text(encoding="utf-8").splitlines()
    org = json.loads(lines[2])  # org-lakeview
    org["active"] = "maybe"
    org["colour"] = "blue"
    lines[2] = json.dumps(org)
    (export / "Organization.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reading = read_attribution(export, today=TODAY)
    bad = dict(reading.rejected)
    assert bad["Organization.ndjson line 3"].startswith("invalid Organization: ")
    assert "active: Input should be a valid boolean" in bad["Organization.ndjson line 3"]
    assert "colour: Extra inputs are not permitted" in bad["Organization.ndjson line 3"]
    # both Lakeview members are rejected, naming the resource and its line
    for n in (3, 6):
        assert bad[f"{GROUP} member {n}"] == ("the attributed provider Organization/org-lakeview is invalid "
                                              "(Organization.ndjson line 3)")
    assert [r["member_id"] for r in reading.members] == ["M1001", "M1002", "M1004", "M1007"]


def test_one_invalid_member_rejects_that_member_only(tmp_path):
    export = copy_sample(tmp_path)
    group = json.loads((export / "Group.ndjson").read_text(encoding="utf-8"))
    group["member"][1]["period"]["start"] = "01/01/2011"
    (export / "Group.ndjson").write_text(json.dumps(group) + "\n", encoding="utf-8")
    reading = read_attribution(export, today=TODAY)
    assert dict(reading.rejected)[f"{GROUP} member 2"] == (
        "invalid member: period.start: DateTime value string does not match spec regex.")
    assert [r["member_id"] for r in reading.members] == ["M1001", "M1003", "M1004", "M1006", "M1007"]


def test_a_bad_birth_date_never_appears_in_the_report(tmp_path):
    reading = read_attribution(SAMPLE, today=TODAY)
    assert "1961-02-30" not in json.dumps(reading.to_dict())


# ─────────────────────────────── the mapping, rule by rule ───────────────────────────────

MB_SYS = "https://plan.example.org/member-id"


def mb(value, system=MB_SYS):
    return {"type": {"coding": [{"system": V2_0203, "code": "MB"}]}, "system": system, "value": value}


def patient(pid, member=None, birth="1960-05-01", gender="female", **extra):
    r = {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth, **extra}
    if member:
        r["identifier"] = [mb(member)]
    return r


def coverage(cid, pid, member=None, period=("2011-01-01", "2011-12-31")):
    r = {"resourceType": "Coverage", "id": cid, "status": "active", "beneficiary": {"reference": f"Patient/{pid}"},
         "payor": [{"reference": "Organization/payer"}], "period": {"start": period[0], "end": period[1]}}
    if member:
        r["identifier"] = [mb(member)]
    return r


def org(oid, npi=None, tin=None):
    ids = ([{"system": NPI_SYSTEM, "value": npi}] if npi else []) + ([{"system": TIN_SYSTEM, "value": tin}] if tin else [])
    return {"resourceType": "Organization", "id": oid, "name": oid, **({"identifier": ids} if ids else {})}


def member(pid, provider="Organization/o1", cov=None, period=("2011-01-01", "2011-12-31"), **extra):
    ext = []
    if cov:
        ext.append({"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": cov}})
    if provider:
        ext.append({"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": (
            {"reference": provider} if isinstance(provider, str) else provider)})
    m = {"entity": {"reference": f"Patient/{pid}"}, **extra}
    if ext:
        m["extension"] = ext
    if period:
        m["period"] = {k: v for k, v in zip(("start", "end"), period) if v}
    return m


def export(tmp_path, members, *resources) -> Path:
    """A $davinci-data-export folder: the Group and the resources, one NDJSON file per type."""
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    group = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": members}
    files: dict[str, list[str]] = {"Group": [json.dumps(group)]}
    for r in (org("o1", npi="1234567893"), *resources):
        files.setdefault(r["resourceType"], []).append(json.dumps(r))
    for kind, lines in files.items():
        (folder / f"{kind}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def one(tmp_path, members, *resources):
    reading = read_attribution(export(tmp_path, members, *resources), today=TODAY)
    return reading.members, dict(reading.rejected), dict(reading.warnings)


def test_member_id_prefers_the_patient_identifier_in_the_coverage_system(tmp_path):
    p = patient("p1", "PAT-MB")
    p["identifier"] = [mb("OTHER-PLAN", "https://other.example.org/mb"),
                       {"system": "https://plan2.example.org/id", "value": "P2-77"}]
    cov = coverage("c1", "p1")
    cov["identifier"] = [mb("COV-MB", "https://plan2.example.org/id")]
    rows, rejected, _ = one(tmp_path, [member("p1", cov="Coverage/c1")], p, cov)
    assert rows[0]["member_id"] == "P2-77" and not rejected


def test_member_id_falls_back_to_patient_mb_then_coverage_mb(tmp_path):
    rows, _, _ = one(tmp_path, [member("p1", cov="Coverage/c1"), member("p2", cov="Coverage/c2")],
                     patient("p1", "PMB-1"), coverage("c1", "p1"), patient("p2"), coverage("c2", "p2", "CMB-2"))
    assert [r["member_id"] for r in rows] == ["PMB-1", "CMB-2"]


def test_no_member_identifier_is_rejected(tmp_path):
    _, rejected, _ = one(tmp_path, [member("p1")], patient("p1"))
    assert rejected["Group/g1 member 1"].startswith("no member identifier")


def test_practice_id_organization_npi_then_tin_practitioner_and_role(tmp_path):
    prac = {"resourceType": "Practitioner", "id": "dr1", "identifier": [{"system": NPI_SYSTEM, "value": "1987654328"}]}
    role_org = {"resourceType": "PractitionerRole", "id": "r1", "organization": {"reference": "Organization/o3"},
                "practitioner": {"reference": "Practitioner/dr1"}}
    role_prac = {"resourceType": "PractitionerRole", "id": "r2", "practitioner": {"reference": "Practitioner/dr1"}}
    logical = {"identifier": {"system": NPI_SYSTEM, "value": "1543210987"}}
    members = [member("p1", "Organization/o2"), member("p2", "Organization/o3"), member("p3", "Practitioner/dr1"),
               member("p4", "PractitionerRole/r1"), member("p5", "PractitionerRole/r2"), member("p6", logical),
               member("p7", "https://payer.example.org/fhir/Organization/o2/_history/3")]
    resources = [patient(f"p{i}", f"M{i}") for i in range(1, 8)]
    rows, rejected, _ = one(tmp_path, members, *resources, org("o2", npi="1456789019", tin="461234567"),
                            org("o3", tin="473456789"), prac, role_org, role_prac)
    assert not rejected
    assert [r["practice_id"] for r in rows] == ["1456789019", "473456789", "1987654328", "473456789",
                                                 "1987654328", "1543210987", "1456789019"]


@pytest.mark.parametrize("provider, resources, reason", [
    (None, [], "no attributed provider (extension ext-attributedProvider)"),
    ("Organization/o9", [], "the attributed provider Organization/o9 is not in the export"),
    ("Organization/o2", [org("o2")], "the attributed provider Organization/o2 has no NPI or TIN identifier"),
    ("Patient/p1", [], "the attributed provider Patient/p1 is not an Organization, a Practitioner or a "
                       "PractitionerRole"),
    ("#contained", [], "the attributed provider reference '#contained' cannot be followed (not Type/id, or a "
                       "contained resource)"),
])
def test_unusable_attributed_provider_is_rejected(tmp_path, provider, resources, reason):
    rows, rejected, _ = one(tmp_path, [member("p1", provider)], patient("p1", "M1"), *resources)
    assert rows == () and rejected == {"Group/g1 member 1": reason}


def test_patient_problems_are_rejected(tmp_path):
    members = [member("p1"), member("p2"), member("p3"), member("p4"), member("missing"),
               member("p5", inactive=True)]
    resources = [patient("p1", "M1", birth=None), patient("p2", "M2", birth="1960"),
                 patient("p3", "M3", birth="2030-01-01"), patient("p4", "M4"), patient("p5", "M5"),
                 patient("p4", "M4-again")]
    rows, rejected, _ = one(tmp_path, members, *resources)
    assert rows == ()
    assert rejected == {
        "Group/g1 member 1": "Patient/p1 has no birthDate",
        "Group/g1 member 2": "Patient/p2 has a birthDate without a day (a year or a month only)",
        "Group/g1 member 3": "Patient/p3 has a birth date after 2026-01-01",
        "Patient.ndjson line 6": "Patient/p4 appears again (first at Patient.ndjson line 4)",
        "Group/g1 member 4": "the member's Patient/p4 appears more than once (Patient.ndjson line 4, "
                             "Patient.ndjson line 6)",
        "Group/g1 member 5": "the member's Patient/missing is not in the export",
        "Group/g1 member 6": "skipped: the member is marked inactive (Group.member.inactive = true)",
    }


def test_sex_mapping(tmp_path):
    members = [member(f"p{i}") for i in range(1, 6)]
    resources = [patient("p1", "M1", gender="male"), patient("p2", "M2", gender="female"),
                 patient("p3", "M3", gender="other"), patient("p4", "M4", gender="unknown"),
                 patient("p5", "M5", gender=None)]
    rows, _, warnings = one(tmp_path, members, *resources)
    assert [r["sex"] for r in rows] == ["M", "F", None, None, None]
    assert warnings == {}


def test_periods_partial_dates_coverage_fallback_and_death(tmp_path):
    members = [member("p1", period=("2011-03", "2011-06")),  # a month: its first day to the end's last day
               member("p2", period=("2011", "2011")),
               member("p3", cov="Coverage/c3", period=None),  # the Coverage's period
               member("p4", period=("2011-01-01T00:00:00-06:00", None)),  # a dateTime's own date; no end
               member("p5", period=("2011-01-01", "2011-12-31")),
               member("p6", period=("2011-05-01", "2011-04-30")),
               member("p7", period=None)]
    resources = [patient("p1", "M1"), patient("p2", "M2"), patient("p3", "M3"), coverage("c3", "p3", period=(
        "2010-10-01", "2011-09-30")), patient("p4", "M4"),
        patient("p5", "M5", deceasedDateTime="2011-08-14T10:00:00+02:00"), patient("p6", "M6"),
        patient("p7", "M7")]
    rows, rejected, warnings = one(tmp_path, members, *resources)
    got = {r["member_id"]: (r["enrolled_from"], r["enrolled_to"]) for r in rows}
    assert got == {"M1": (date(2011, 3, 1), date(2011, 6, 30)), "M2": (date(2011, 1, 1), date(2011, 12, 31)),
                   "M3": (date(2010, 10, 1), date(2011, 9, 30)), "M4": (date(2011, 1, 1), None),
                   "M5": (date(2011, 1, 1), date(2011, 8, 14)), "M7": (None, None)}
    assert rejected == {"Group/g1 member 6": "Group.member.period ends before it starts"}
    assert warnings == {
        "Group/g1 member 5": "Patient/p5 died during the period: enrolled_to is the date of death",
        "Group/g1 member 7": "no Group.member.period and no Coverage.period: enrolled open-ended"}


def test_coverage_problems(tmp_path):
    members = [member("p1", cov="Coverage/c1"), member("p2", cov="Coverage/c9")]
    rows, rejected, warnings = one(tmp_path, members, patient("p1", "M1"), coverage("c1", "p2"),
                                   patient("p2", "M2"))
    assert rejected == {"Group/g1 member 1": "its Coverage/c1 is for Patient/p2, not for the member's Patient/p1"}
    assert warnings == {"Group/g1 member 2": "the member's Coverage/c9 is not in the export; "
                                             "the member is read without it"}
    assert [r["member_id"] for r in rows] == ["M2"]


def test_a_member_twice_is_one_row_and_the_second_is_reported(tmp_path):
    members = [member("p1", period=("2011-01-01", "2011-05-31")), member("p1", period=("2011-06-01", None))]
    rows, rejected, _ = one(tmp_path, members, patient("p1", "M1"))
    assert len(rows) == 1 and rows[0]["enrolled_to"] == date(2011, 5, 31)
    assert rejected == {"Group/g1 member 2": "the same member identifier is already read from Group/g1 member 1 "
                                             "(one row per member)"}


def test_patients_in_no_group_are_counted(tmp_path):
    reading = read_attribution(export(tmp_path, [member("p1")], patient("p1", "M1"), patient("p2", "M2")),
                               today=TODAY)
    assert reading.patients_not_in_group == 1


def test_a_bundle_reads_like_the_ndjson_folder(tmp_path):
    entries = []
    for f in sorted(SAMPLE.glob("*.ndjson")):
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            entries.append({"fullUrl": f"https://payer.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r})
    bundle = tmp_path / "attribution.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8")
    reading = read_attribution(bundle, today=TODAY)
    assert list(reading.members) == SAMPLE_ROWS
    position = next(f"attribution.json entry {i}" for i, e in enumerate(entries, start=1)
                    if e["resource"]["id"] == "pat-1005")
    assert reading.rejected[0][0] == position
    assert reading.rejected[1] == (f"{GROUP} member 5", f"the member's Patient/pat-1005 is invalid ({position})")


@pytest.mark.parametrize("content, code, message", [
    (b"{not json", "E0716", "not JSON"),
    (b'{"resourceType": "Group", "id": "g"}', "E0716", "not a FHIR Bundle"),
    (b'{"resourceType": "Bundle"}', "E0716", "invalid Bundle: type"),
    (b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}',
     "E0701", "the export has no usable Group resource"),
    (b'\xff\xfe{', "E0710", "not valid UTF-8"),
])
def test_an_unusable_bundle_file_is_a_clear_error(tmp_path, content, code, message):
    path = tmp_path / "bundle.json"
    path.write_bytes(content)
    with pytest.raises(CapError) as info:
        read_attribution(path, today=TODAY)
    assert info.value.code == code and message in info.value.diagnostics[0].message


def test_missing_folder_and_folder_without_ndjson(tmp_path):
    with pytest.raises(CapError) as info:
        read_attribution(tmp_path / "nope")
    assert info.value.code == "E0701" and "no such file or folder" in str(info.value)
    with pytest.raises(CapError) as info:
        read_attribution(tmp_path)
    assert info.value.code == "E0701" and "no .ndjson files" in str(info.value)


def test_without_fhir_resources_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fhir.resources.R4B", None)  # import fails as if not installed
    result = run("panel", "from-atr", SAMPLE, "-o", tmp_path / "m.csv")
    assert result.exit_code == 1
    assert "error[E0750]" in result.output and "pip install 'capdsl[fhir]'" in result.output
    assert not (tmp_path / "m.csv").exists()


# ─────────────────────────────── the command ───────────────────────────────

def test_cli_end_to_end_and_a_contract_runs_on_the_output(tmp_path):
    out = tmp_path / "members.csv"
    result = run("panel", "from-atr", SAMPLE, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == CSV_TEXT
    text = result.output
    assert "members: 6 of 9 group members (1 Group); not converted: 3" in text
    for position, reason in SAMPLE_REJECTED:
        assert f"  {position}: {reason}" in text
    assert f"members table -> {out}" in text

    result = run("eval", ROOT / "contracts" / "us_pmpm.cap", "--members", out, "--period", "2011-03")
    assert result.exit_code == 0, result.output
    # March 2011: M1001, M1002 (1234567893), M1006 (1456789019; M1003 ended in February), M1004 (TIN
    # 473456789), M1007 (practitioner 1678901236): 5 members at 100 USD less the 10 % withhold
    assert "Grand total (4 practices): 450.00 USD" in result.output


def test_cli_json_report_and_parquet(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "members.parquet"
    result = run("panel", "from-atr", SAMPLE, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["members"] == 6 and report["members_rejected"] == 3 and report["output"] == str(out)
    assert [(r["position"], r["reason"]) for r in report["rejected"]] == SAMPLE_REJECTED
    table = pq.read_table(out)
    assert table.column_names == ["member_id", "practice_id", "birth_date", "sex", "enrolled_from", "enrolled_to"]
    assert table.to_pylist() == SAMPLE_ROWS
    result = run("eval", ROOT / "contracts" / "us_pmpm.cap", "--members", out, "--period", "2011-03")
    assert result.exit_code == 0 and "Grand total (4 practices): 450.00 USD" in result.output


def test_cli_csv_to_stdout_puts_the_report_on_stderr():
    result = CliRunner().invoke(main, ["panel", "from-atr", str(SAMPLE), "-o", "-"],
                                                prog_name="capdsl")
    assert result.exit_code == 0
    assert result.stdout == CSV_TEXT
    assert "not converted: 3" in result.stderr


def test_cli_output_in_a_missing_folder_is_a_clear_error(tmp_path):
    result = run("panel", "from-atr", SAMPLE, "-o", tmp_path / "no" / "such" / "members.csv")
    assert result.exit_code == 1
    assert "error[E0930]" in result.output and "does not exist" in result.output
    assert not (tmp_path / "no").exists()


def test_cli_bad_extension_is_refused_before_reading(tmp_path):
    result = run("panel", "from-atr", tmp_path / "nope", "-o", tmp_path / "members.txt")
    assert result.exit_code == 1 and "error[E0906]" in result.output


def test_cli_nothing_readable_exits_1_and_writes_nothing(tmp_path):
    folder = export(tmp_path, [member("p1", inactive=True), member("p2", provider=None)],
                    patient("p1", "M1"), patient("p2", "M2"))
    out = tmp_path / "members.csv"
    out.write_text("old\n", encoding="utf-8")
    result = run("panel", "from-atr", folder, "-o", out)
    assert result.exit_code == 1
    assert "error[E0702]" in result.output and "no member could be read" in result.output
    assert "Group/g1 member 1: skipped: the member is marked inactive" in result.output
    assert out.read_text(encoding="utf-8") == "old\n"


def test_from_atr_api_writes_atomically_and_returns_the_reading(tmp_path):
    out = tmp_path / "m.csv"
    reading = from_atr(SAMPLE, out, today=TODAY)
    assert len(reading.members) == 6
    assert list(csv.DictReader(out.open(encoding="utf-8")))[0]["member_id"] == "M1001"
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left behind

