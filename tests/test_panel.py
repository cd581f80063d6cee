"""Panel loading: the valid panel in every format, and the bad-input catalogue.

Each catalogue row replaces one file of the valid panel in tests/data/panel
with a bad variant and names the diagnostic code and a fragment of its
message. Nothing may be dropped silently: a load either raises InputError
listing every problem or returns every row.
"""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from capdsl.errors import InputError, UsageError
from capdsl.data.panel import (LIMIT, ColumnSpec, MeasureSpec, ParamSpec, Requirements, load_panel,
                          parse_params, redact_id)

DATA = Path(__file__).parent / "data" / "panel"
TODAY = date(2026, 1, 1)
D = Decimal


def requirements() -> Requirements:
    return Requirements(
        members=[ColumnSpec("diabetes", "bool", False, False, "t.cap:3 (member diabetes)")],
        practices=[ColumnSpec("weekly_hours", "decimal", True, None, "t.cap:4 (practice weekly_hours)"),
                   ColumnSpec("kind", "text", False, "adult", "t.cap:5 (practice kind)")],
        events=[ColumnSpec("points", "decimal", False, None, "t.cap:6 (event points)")],
        measures={"quality_met": MeasureSpec("bool", None, "t.cap:7"),
                  "drug_cost": MeasureSpec("decimal", None, "t.cap:8")},
        params={"avg_cost": ParamSpec("decimal", None, unit="CZK per member", needed_by="t.cap:9"),
                "share": ParamSpec("decimal", D("0.1"), unit="%", needed_by="t.cap:10"),
                "year_start": ParamSpec("date", date(2011, 1, 1), needed_by="t.cap:11"),
                "akord": ParamSpec("bool", None, needed_by="t.cap:12")},
        needs_practices=True, needs_events=True, needs_measures=True)


def panel_files(tmp_path: Path, **override) -> dict[str, Path]:
    """The valid panel copied to tmp_path, with some tables replaced: name=(suffix, bytes|str)."""
    files = {}
    for table in ("members", "practices", "events", "measures"):
        if table in override:
            value = override[table]
            if value is None:
                continue
            suffix, content = value
            path = tmp_path / f"{table}{suffix}"
            if isinstance(content, str):
                content = content.encode("utf-8")
            path.write_bytes(content)
        else:
            path = tmp_path / f"{table}.csv"
            shutil.copy(DATA / f"{table}.csv", path)
        files[table] = path
    return files


def load(tmp_path, show_ids=False, **override):
    return load_panel(panel_files(tmp_path, **override), requirements(), today=TODAY, show_ids=show_ids)


def sub(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def codes(exc: InputError) -> list[str]:
    return [d.code for d in exc.diagnostics]


# ─────────────────────────────── valid panels ───────────────────────────────

def test_valid_csv_panel_types_every_column(tmp_path):
    p = load(tmp_path)
    assert p.warnings == []
    assert p.member_rows(["member_id", "practice_id", "birth_date", "sex", "enrolled_from", "enrolled_to",
                          "diabetes"]) == [
        ("M1", "P1", date(1950, 1, 1), "F", None, None, True),
        ("M2", "P1", date(1980, 6, 15), "M", date(2010, 1, 1), None, False),
        ("M3", "P2", date(2005, 3, 1), "F", None, date(2011, 6, 30), False),  # empty -> default false
    ]
    assert p.practice_rows(["practice_id", "weekly_hours", "kind"]) == [("P1", D("30"), "adult"),
                                                                       ("P2", D("25.5"), "adult")]
    assert p.event_rows(["practice_id", "member_id", "code", "points", "quantity"]) == [
        ("P1", "M1", "PREV", D(350), D(1)), ("P1", "M2", "CRP", None, D(1)), ("P2", None, "VACC", D("70.25"), D(2))]
    assert p.measure_rows() == [("P1", "2011", "quality_met", True), ("P1", "2011-Q1", "drug_cost", D("123.45")),
                                ("P2", "2011-03", "drug_cost", D(99))]
    rows = p.con.execute("SELECT period, period_kind, period_start, period_end FROM measures ORDER BY _row").fetchall()
    assert rows[1] == ("2011-Q1", "quarter", date(2011, 1, 1), date(2011, 3, 31))
    assert rows[2] == ("2011-03", "month", date(2011, 3, 1), date(2011, 3, 31))
    types = dict((r[0], r[1]) for r in p.con.execute("DESCRIBE practices").fetchall())
    assert types["weekly_hours"] == "DECIMAL(38,10)"
    assert all(isinstance(v, Decimal) for _, v in p.practice_rows(["practice_id", "weekly_hours"]))


def test_parquet_and_jsonl_give_the_same_rows(tmp_path):
    csv_panel = load(sub(tmp_path, "a"))
    con = duckdb.connect()
    for t in ("members", "practices", "events", "measures"):
        con.execute(f"COPY (SELECT * FROM read_csv('{DATA / (t + '.csv')}', all_varchar=true)) "
                    f"TO '{tmp_path / (t + '.parquet')}' (FORMAT parquet)").fetchall()
    files = {t: tmp_path / f"{t}.parquet" for t in ("members", "practices", "events", "measures")}
    pq = load_panel(files, requirements(), today=TODAY)
    files["events"] = DATA / "events.jsonl"
    js = load_panel(files, requirements(), today=TODAY)
    cols = ["member_id", "practice_id", "birth_date", "diabetes"]
    assert pq.member_rows(cols) == csv_panel.member_rows(cols)
    ecols = ["practice_id", "member_id", "date", "code", "points", "quantity"]
    assert js.event_rows(ecols) == csv_panel.event_rows(ecols) == pq.event_rows(ecols)
    assert pq.measure_rows() == csv_panel.measure_rows()


def test_typed_parquet_columns_are_accepted(tmp_path):
    con = duckdb.connect()
    path = tmp_path / "m.parquet"
    con.execute(f"COPY (SELECT 'M1' AS member_id, 'P1' AS practice_id, DATE '1950-01-01' AS birth_date, "
                f"TIMESTAMP '2010-01-01 00:00:00' AS enrolled_from, TRUE AS diabetes) TO '{path}' (FORMAT parquet)"
                ).fetchall()
    req = requirements()
    req.practices = []
    p = load_panel({"members": path}, req, today=TODAY)
    assert p.member_rows(["birth_date", "enrolled_from", "diabetes"]) == [
        (date(1950, 1, 1), date(2010, 1, 1), True)]


def test_jsonl_numbers_keep_every_digit(tmp_path):
    events = ('{"practice_id": "P1", "date": "2011-03-01", "code": "X", '
              '"points": 12345678901234567.1234567891}\n')
    p = load(tmp_path, events=(".jsonl", events))
    assert p.event_rows(["points"]) == [(D("12345678901234567.1234567891"),)]


def test_json_array_and_format_override(tmp_path):
    arr = '[{"practice_id": "P1", "date": "2011-03-01", "code": "X", "quantity": 3}]'
    files = panel_files(tmp_path, events=(".txt", arr))
    p = load_panel(files, requirements(), formats={"events": "json"}, today=TODAY)
    assert p.event_rows(["code", "quantity"]) == [("X", D(3))]


def test_bom_crlf_and_quoted_newlines_are_accepted(tmp_path):
    members = ("\ufeffmember_id,practice_id,birth_date,sex\r\n"
               "M1,P1,1950-01-01,\"F\r\nx\"\r\nM2,P2,1960-01-01,M\r\n")
    p = load(tmp_path, members=(".csv", members))
    assert p.member_rows(["member_id", "sex"]) == [("M1", "F\r\nx"), ("M2", "M")]


def test_optional_tables_may_be_absent_and_practices_are_derived(tmp_path):
    files = panel_files(tmp_path, practices=None, events=None, measures=None)
    req = requirements()
    req.practices = [ColumnSpec("kind", "text", False, "adult", "t.cap:5")]
    p = load_panel(files, req, today=TODAY)
    assert p.practice_rows(["practice_id", "kind"]) == [("P1", "adult"), ("P2", "adult")]
    assert p.event_rows(["code"]) == [] and p.measure_rows() == []
    assert sorted(d.code for d in p.warnings) == ["W0718", "W0718"]


def test_columns_not_in_the_file_take_their_default(tmp_path):
    members = "member_id,practice_id,birth_date\nM1,P1,1950-01-01\n"
    p = load(tmp_path, members=(".csv", members))
    assert p.member_rows(["diabetes", "sex", "enrolled_to"]) == [(False, None, None)]


def test_values_are_trimmed_and_booleans_accept_common_spellings(tmp_path):
    members = ("member_id,practice_id,birth_date,diabetes\n M1 , P1 , 1950-01-01 ,YES\n"
               "M2,P1,1950-01-01,0\nM3,P1,1950-01-01,True\n")
    p = load(tmp_path, members=(".csv", members))
    assert p.member_rows(["member_id", "practice_id", "diabetes"]) == [
        ("M1", "P1", True), ("M2", "P1", False), ("M3", "P1", True)]


def test_percentages_in_number_columns(tmp_path):
    measures = ("practice_id,period,measure,value\nP1,2011,drug_cost,35%\nP1,2011-Q1,drug_cost,12.5 %\n"
                "P2,2011,drug_cost,0.35\n")
    p = load(tmp_path, measures=(".csv", measures))
    assert [r[3] for r in p.measure_rows()] == [D("0.35"), D("0.125"), D("0.35")]


def test_age_warning_is_judged_at_the_period_start(tmp_path):
    from capdsl.evaluation.periods import parse_period

    members = M_HEAD + "M1,P1,1901-03-01,,,,\n"
    files = panel_files(tmp_path, members=(".csv", members))
    def ages(**kw):
        return [d.code for d in load_panel(files, requirements(), today=TODAY, **kw).warnings if d.code == "W0714"]

    assert ages() == ["W0714"]
    assert ages(period=parse_period("2011-02")) == []
    assert ages(period=parse_period("2011-03")) == ["W0714"]


def test_member_label_follows_show_ids(tmp_path):
    assert load(sub(tmp_path, "a")).member_label("M1") == redact_id("M1")
    assert load(sub(tmp_path, "b"), show_ids=True).member_label("M1") == "'M1'"


def test_accessor_rejects_unknown_columns(tmp_path):
    with pytest.raises(KeyError):
        load(tmp_path).member_rows(["nope"])


def test_row_order_does_not_change_accessors(tmp_path):
    lines = (DATA / "members.csv").read_text().splitlines()
    shuffled = "\n".join([lines[0], lines[3], lines[1], lines[2]]) + "\n"
    a = load(sub(tmp_path, "x"))
    b = load(tmp_path, members=(".csv", shuffled))
    cols = ["member_id", "practice_id", "birth_date", "diabetes"]
    assert a.member_rows(cols) == b.member_rows(cols)


# ─────────────────────────────── the bad-input catalogue ───────────────────────────────

M_HEAD = "member_id,practice_id,birth_date,sex,enrolled_from,enrolled_to,diabetes\n"
BAD = [
    # id, table, (suffix, content), code, message fragment
    ("missing required column", "members", (".csv", "member_id,practice_id\nM1,P1\n"), "E0703",
     "no column 'birth_date'"),
    ("missing declared column names the contract line", "practices", (".csv", "practice_id\nP1\nP2\n"), "E0703",
     "t.cap:4 (practice weekly_hours)"),
    ("misspelt column gets a suggestion", "practices", (".csv", "practice_id,weekly_hour\nP1,30\nP2,30\n"),
     "E0703", "weekly_hours"),
    ("duplicate header", "practices", (".csv", "practice_id,practice_id\nP1,P1\n"), "E0703", "appears twice"),
    ("bad month in a date", "members", (".csv", M_HEAD + "M1,P1,1950-13-01,,,,\n"), "E0704",
     "row 2, column birth_date"),
    ("date in another notation", "members", (".csv", M_HEAD + "M1,P1,01/02/1950,,,,\n"), "E0704",
     "not a valid date"),
    ("date out of range", "members", (".csv", M_HEAD + "M1,P1,0201-03-04,,,,\n"), "E0704", "not a valid date"),
    ("decimal comma", "practices", (".csv", "practice_id,weekly_hours\nP1,\"30,5\"\nP2,30\n"), "E0704",
     "row 2, column weekly_hours: '30,5' is not a valid number"),
    ("number with a unit", "practices", (".csv", "practice_id,weekly_hours\nP1,30 hours\nP2,30\n"), "E0704",
     "'30 hours'"),
    ("too many decimal places", "practices", (".csv", "practice_id,weekly_hours\nP1,0.12345678901\nP2,1\n"),
     "E0704", "weekly_hours"),
    ("bad boolean", "members", (".csv", M_HEAD + "M1,P1,1950-01-01,,,,maybe\n"), "E0704",
     "column diabetes: 'maybe' is not a valid boolean"),
    ("0-byte CSV", "members", (".csv", b""), "E0702", "the file is empty"),
    ("blank CSV", "events", (".csv", "\n\n  \n"), "E0702", "blank"),
    ("header but no members", "members", (".csv", M_HEAD), "E0702", "no rows"),
    ("empty header line", "practices", (".csv", "\nP1,30\n"), "E0702", "no header"),
    ("ragged row", "events", (".csv", "practice_id,date,code\nP1,2011-03-01\n"), "E0716", "fields"),
    ("duplicate member_id", "members", (".csv", M_HEAD + "M1,P1,1950-01-01,,,,\nM1,P2,1960-01-01,,,,\n"),
     "E0706", "appears 2 times (rows 2, 3)"),
    ("duplicate practice_id", "practices", (".csv", "practice_id,weekly_hours\nP1,30\nP1,31\nP2,3\n"), "E0706",
     "practice_id 'P1' appears 2 times"),
    ("member of an unknown practice", "members", (".csv", M_HEAD + "M1,P9,1950-01-01,,,,\n"), "E0707",
     "practice_id 'P9' (1 row, first on row 2) is not in the practices file"),
    ("event of an unknown practice", "events", (".csv", "practice_id,date,code\nP7,2011-03-01,X\n"), "E0707",
     "'P7'"),
    ("measure of an unknown practice", "measures", (".csv", "practice_id,period,measure,value\nP7,2011,drug_cost,1\n"),
     "E0707", "'P7'"),
    ("empty member_id", "members", (".csv", M_HEAD + ",P1,1950-01-01,,,,\n"), "E0705",
     "row 2: column member_id is empty"),
    ("empty practice_id", "members", (".csv", M_HEAD + "M1,,1950-01-01,,,,\n"), "E0705", "practice_id"),
    ("empty event date", "events", (".csv", "practice_id,date,code\nP1,,X\n"), "E0705", "column date is empty"),
    ("null in JSONL required column", "events", (".jsonl", '{"practice_id": "P1", "date": null, "code": "X"}\n'),
     "E0705", "date"),
    ("future birth date", "members", (".csv", M_HEAD + "M1,P1,2030-01-01,,,,\n"), "E0708", "after 2026-01-01"),
    ("negative quantity", "events", (".csv", "practice_id,date,code,quantity\nP1,2011-03-01,X,-1\n"), "E0709",
     "quantity is negative (-1)"),
    ("negative points", "events", (".csv", "practice_id,date,code,points\nP1,2011-03-01,X,-0.5\n"), "E0709",
     "points is negative"),
    ("enrolment ends before it starts", "members", (".csv", M_HEAD + "M1,P1,1950-01-01,,2011-05-01,2011-04-30,\n"),
     "E0713", "enrolled_to before enrolled_from"),
    ("latin-1 CSV", "members", (".csv", (M_HEAD + "M1,P1,1950-01-01,,,,\nM2,P1,1950-01-01,é,,,\n").encode("latin-1")),
     "E0710", "line 3"),
    ("UTF-16 CSV", "members", (".csv", (M_HEAD + "M1,P1,1950-01-01,,,,\n").encode("utf-16")), "E0710", "UTF-16"),
    ("0-byte Parquet", "members", (".parquet", b""), "E0702", "empty"),
    ("not Parquet at all", "members", (".parquet", b"member_id,practice_id\n"), "E0711", "truncated or corrupt"),
    ("malformed JSONL line", "events", (".jsonl", '{"practice_id": "P1", "date": "2011-03-01", "code": "X"}\n{"pr\n'),
     "E0716", "line 2"),
    ("JSONL line that is not an object", "events", (".jsonl", '[1, 2]\n'), "E0716", "not a JSON object"),
    ("non-UTF-8 JSONL", "events", (".jsonl", b'{"code": "\xe9"}\n'), "E0710", "offset"),
    ("bad measure value", "measures", (".csv", "practice_id,period,measure,value\nP1,2011,quality_met,perhaps\n"),
     "E0704", "measure quality_met"),
    ("bad measure period", "measures", (".csv", "practice_id,period,measure,value\nP1,2011-13,drug_cost,1\n"),
     "E0704", "'2011-13' is not a period"),
    ("duplicate measure", "measures", (".csv", "practice_id,period,measure,value\nP1,2011,drug_cost,1\n"
                                               "P1,2011,drug_cost,2\n"), "E0706", "measure 'drug_cost' of practice 'P1'"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_catalogue(tmp_path, case):
    _, table, content, code, fragment = case
    with pytest.raises(InputError) as info:
        load(tmp_path, **{table: content})
    exc = info.value
    assert code in codes(exc), exc.render()
    messages = [d.message for d in exc.diagnostics if d.code == code]
    assert any(fragment in m for m in messages), messages
    assert all(d.path for d in exc.diagnostics if d.code == code)


def _members_parquet(tmp_path, options: str = "FORMAT parquet") -> bytes:
    good = tmp_path / "good.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{DATA / 'members.csv'}', all_varchar=true)) "
                             f"TO '{good}' ({options})").fetchall()
    return good.read_bytes()


@pytest.mark.parametrize("typed", [False, True], ids=["text columns, typed copy", "typed columns, read in place"])
def test_parquet_with_a_corrupt_data_page(tmp_path, typed):
    """Footer intact, a page garbled: found on the first full read, reported as E0711, not a DuckDB error."""
    import struct

    options = "FORMAT parquet, COMPRESSION zstd"
    data = (_typed_members_parquet(tmp_path / "good.parquet", TYPED_MEMBERS, options).read_bytes() if typed
            else _members_parquet(tmp_path, options))
    footer_start = len(data) - 8 - struct.unpack("<i", data[-8:-4])[0]
    bad = data[:8] + bytes(b ^ 0x5A for b in data[8:footer_start]) + data[footer_start:]
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".parquet", bad))
    assert "E0711" in codes(info.value)
    assert "Traceback" not in info.value.render()


def test_truncated_parquet(tmp_path):
    data = _members_parquet(tmp_path)
    for cut in (data[: len(data) // 2], data[:-5], data[:4] + b"\0" * (len(data) - 8) + data[-4:]):
        with pytest.raises(InputError) as info:
            load(tmp_path, members=(".parquet", cut))
        assert codes(info.value) == ["E0711"]
        assert "Traceback" not in info.value.render() and "Error:" not in info.value.diagnostics[0].message


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_unreadable_file(tmp_path, what):
    files = panel_files(tmp_path)
    files["events"] = tmp_path / "nope.csv"
    if what == "directory":
        files["events"] = tmp_path / "dir.csv"
        files["events"].mkdir()
    with pytest.raises(InputError) as info:
        load_panel(files, requirements(), today=TODAY)
    assert codes(info.value) == ["E0701"]


def test_no_members_file(tmp_path):
    with pytest.raises(InputError) as info:
        load_panel({}, requirements(), today=TODAY)
    assert "E0701" in codes(info.value)


def test_unknown_extension_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        load(tmp_path, members=(".dat", "x"))
    assert info.value.code == "E0906"


def test_every_problem_is_reported_at_once(tmp_path):
    members = M_HEAD + "M1,P1,1950-13-01,,,,maybe\nM1,P9,2030-01-01,,,,\n"
    events = "practice_id,date,code,quantity\nP1,2011-03-01,X,-2\n"
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".csv", members), events=(".csv", events))
    assert set(codes(info.value)) >= {"E0704", "E0706", "E0707", "E0708", "E0709"}


def test_bad_rows_are_listed_up_to_the_limit(tmp_path):
    rows = "".join(f"M{i},P1,1950-02-30,,,,\n" for i in range(LIMIT + 5))
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".csv", M_HEAD + rows))
    diags = [d for d in info.value.diagnostics if d.code == "E0704"]
    assert len(diags) == LIMIT + 1
    assert diags[0].message.startswith("row 2,") and diags[LIMIT - 1].message.startswith(f"row {LIMIT + 1},")
    assert diags[-1].message == "… and 5 more rows with a bad birth_date"


# ─────────────────────────────── warnings and privacy ───────────────────────────────

def test_data_quality_warnings_do_not_stop_the_load(tmp_path):
    members = M_HEAD + "M1,P1,1900-01-01,,,,\nM2,P2,1950-01-01,,,,\n"
    events = "practice_id,member_id,date,code\nP1,GHOST,2011-03-01,X\n"
    measures = "practice_id,period,measure,value\nP1,2011,qualty_met,true\n"
    p = load(tmp_path, members=(".csv", members), events=(".csv", events), measures=(".csv", measures))
    got = {d.code: d for d in p.warnings}
    assert set(got) == {"W0712", "W0714", "W0715"}
    assert "did you mean 'quality_met'" in got["W0712"].hint
    assert p.count("members") == 2 and p.count("events") == 1 and p.count("measures") == 1  # nothing dropped


def test_ids_and_birth_dates_are_redacted_by_default(tmp_path):
    members = M_HEAD + "SECRET-1,P1,1950-13-01,,,,\nSECRET-2,P1,2030-05-05,,,,\nSECRET-2,P1,1950-01-01,,,,\n"
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".csv", members))
    text = info.value.render()
    assert "SECRET" not in text and "1950-13-01" not in text and "2030-05-05" not in text
    assert redact_id("SECRET-2") in text
    with pytest.raises(InputError) as info:
        load(tmp_path, show_ids=True, members=(".csv", members))
    text = info.value.render()
    assert "'SECRET-2'" in text and "1950-13-01" in text


def test_redacted_id_is_stable_and_short():
    assert redact_id("M1") == redact_id("M1") != redact_id("M2")
    assert redact_id("M1").startswith("id:") and len(redact_id("M1")) == 9


# ─────────────────────────────── parameters ───────────────────────────────

def test_params_are_typed_and_defaults_filled():
    got = parse_params(["avg_cost=250 CZK per member", "akord=yes"], None, requirements())
    assert got == {"akord": True, "avg_cost": D(250), "share": D("0.1"), "year_start": date(2011, 1, 1)}
    got = parse_params(["avg_cost=250", "akord=false", "share=15%", "year_start=2012-01-01"], None, requirements())
    assert got["share"] == D("0.15") and got["avg_cost"] == D(250) and got["year_start"] == date(2012, 1, 1)
    assert parse_params(["avg_cost=1.5 CZK/members", "akord=1"], None, requirements())["avg_cost"] == D("1.5")


def test_plain_number_params_accept_percentages():
    req = Requirements(params={"coef": ParamSpec("decimal", None, unit="", needed_by="t.cap:1"),
                               "days": ParamSpec("integer", None, unit="days", needed_by="t.cap:2")})
    assert parse_params(["coef=15%", "days=2 days"], None, req) == {"coef": D("0.15"), "days": 2}
    assert parse_params(["coef=1.35", "days=2"], None, req) == {"coef": D("1.35"), "days": 2}


def test_params_file_and_set_override(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"avg_cost": 250.10, "akord": true, "share": "20%"}')
    got = parse_params(["avg_cost=300 CZK per member"], f, requirements())
    assert got["avg_cost"] == D(300) and got["akord"] is True and got["share"] == D("0.2")
    assert parse_params([], f, requirements())["avg_cost"] == D("250.10")


@pytest.mark.parametrize("sets, code, fragment", [
    (["avg_cost=250", "akord=true", "avg_cots=1"], "E0902", "unknown parameter 'avg_cots'"),
    (["akord=true"], "E0903", "avg_cost"),
    (["avg_cost=250 EUR per member", "akord=true"], "E0904", "the unit is CZK per member"),
    (["avg_cost=1,500", "akord=true"], "E0904", "thousands"),
    (["avg_cost=abc", "akord=true"], "E0904", "not a number"),
    (["avg_cost=250", "akord=maybe"], "E0904", "true or false"),
    (["avg_cost=250", "akord=true", "share=0.15"], "E0904", "%"),
    (["avg_cost=250", "akord=true", "year_start=2011-02-30"], "E0904", "no such date"),
    (["avg_cost"], "E0904", "name=value"),
])
def test_bad_params(sets, code, fragment):
    with pytest.raises(UsageError) as info:
        parse_params(sets, None, requirements())
    diags = [d for d in info.value.diagnostics if d.code == code]
    assert diags and any(fragment in d.message for d in diags), info.value.render()


def test_missing_param_hint_names_the_option():
    with pytest.raises(UsageError) as info:
        parse_params(["avg_cost=1"], None, requirements())
    assert info.value.diagnostics[0].hint.startswith('pass --set "akord=')


def test_unknown_param_suggests(tmp_path):
    with pytest.raises(UsageError) as info:
        parse_params(["avg_cots=1", "avg_cost=1", "akord=1"], None, requirements())
    assert info.value.diagnostics[0].hint == "did you mean 'avg_cost'?"


def test_bad_params_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{nope")
    with pytest.raises(UsageError) as info:
        parse_params(["avg_cost=1", "akord=1"], f, requirements())
    assert info.value.code == "E0905"


# ─────────────────────────────── size ───────────────────────────────

def test_large_panel_loads_quickly(tmp_path):
    import time

    path = tmp_path / "big_members.csv"
    with open(path, "w") as fh:
        fh.write("member_id,practice_id,birth_date,diabetes\n")
        for i in range(200_000):
            fh.write(f"M{i},P{i % 50},19{i % 90 + 10}-0{i % 9 + 1}-1{i % 9},{'true' if i % 7 else 'false'}\n")
    files = panel_files(tmp_path, practices=None, events=None, measures=None)
    files["members"] = path
    req = requirements()
    req.practices = []
    t = time.perf_counter()
    p = load_panel(files, req, today=TODAY)
    assert p.count("members") == 200_000
    assert time.perf_counter() - t < 10


# ─────────────────────────────── fuzzing ───────────────────────────────

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from capdsl.errors import CapError  # noqa: E402

_SEED = {t: (DATA / f"{t}.csv").read_bytes() for t in ("members", "practices", "events", "measures")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from(sorted(_SEED)), ext=st.sampled_from([".csv", ".jsonl", ".parquet"]),
       cuts=st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=6)), max_size=4))
def test_mutated_files_only_raise_diagnostics(tmp_path_factory, table, ext, cuts):
    """Byte flips, insertions and truncations give a loaded panel or CapError, never another exception."""
    data = bytearray(_SEED[table])
    for pos, junk in cuts:
        pos = min(pos, len(data))
        data[pos:pos + len(junk) // 2] = junk
    tmp = tmp_path_factory.mktemp("fuzz")
    try:
        load(tmp, **{table: (ext, bytes(data))})
    except CapError as exc:
        assert exc.diagnostics and all(d.code[0] in "EW" for d in exc.diagnostics)


def test_natively_typed_parquet_matches_csv_and_still_checks(tmp_path):
    """Typed Parquet columns (DATE, BOOLEAN, DECIMAL, integers) skip the text round trip;
    the rows are the same as from CSV, and nulls, failed casts and odd types are still caught."""
    csv_panel = load(sub(tmp_path, "a"))
    con = duckdb.connect()
    typed = {
        "members": "SELECT member_id, practice_id, CAST(birth_date AS DATE) AS birth_date, "
                   "CAST(diabetes AS BOOLEAN) AS diabetes FROM read_csv(?, all_varchar=true)",
        "practices": "SELECT practice_id, CAST(weekly_hours AS DECIMAL(9, 2)) AS weekly_hours, kind "
                     "FROM read_csv(?, all_varchar=true)",
        "events": "SELECT practice_id, member_id, CAST(date AS DATE) AS date, code, "
                  "CAST(points AS DECIMAL(18, 4)) AS points, CAST(quantity AS INTEGER) AS quantity "
                  "FROM read_csv(?, all_varchar=true)",
    }
    files = {"measures": DATA / "measures.csv"}
    for table, sql in typed.items():
        out = tmp_path / f"{table}.parquet"
        rel = con.sql(sql.replace("?", f"'{DATA / (table + '.csv')}'"))
        rel.write_parquet(str(out))
        files[table] = out
    pq = load_panel(files, requirements(), today=TODAY)
    assert pq.member_rows(["member_id", "practice_id", "birth_date", "diabetes"]) == \
        csv_panel.member_rows(["member_id", "practice_id", "birth_date", "diabetes"])
    ecols = ["practice_id", "member_id", "date", "code", "points", "quantity"]
    assert pq.event_rows(ecols) == csv_panel.event_rows(ecols)
    assert pq.practice_rows(["practice_id", "weekly_hours"]) == csv_panel.practice_rows(["practice_id", "weekly_hours"])

    def codes_with(table: str, select: str) -> set[str]:
        """Codes reported when `table` is replaced by a Parquet file of `select`."""
        path = tmp_path / f"bad_{table}.parquet"
        con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
        with pytest.raises(InputError) as info:
            load_panel({**files, table: path}, requirements(), today=TODAY)
        return {d.code for d in info.value.diagnostics}

    # a null in a typed required column, and a huge integer that cannot be a decimal
    assert "E0705" in codes_with("practices", "SELECT 'P1' AS practice_id, CAST(NULL AS DECIMAL(9, 2)) AS "
                                              "weekly_hours UNION ALL SELECT 'P2', CAST(30 AS DECIMAL(9, 2))")
    assert "E0704" in codes_with("events", "SELECT 'P1' AS practice_id, DATE '2011-03-01' AS date, 'X' AS code, "
                                           "CAST('170141183460469231731687303715884105727' AS HUGEINT) AS points")


@settings(max_examples=200, deadline=None)
@given(members=st.lists(st.sampled_from(["a", "b", "c", "d", None]), max_size=8),
       events=st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), max_size=8))
def test_member_id_pass_agrees_with_sets(members, events):
    """The sorted pass behind E0706 (duplicated member_id) and W0715 (event naming no member)."""
    import duckdb

    from capdsl.data.panel import _member_ids

    con = duckdb.connect()
    for table, ids in (("members", members), ("events", events)):
        con.execute(f"CREATE TABLE {table} (member_id VARCHAR)")
        if ids:
            con.executemany(f"INSERT INTO {table} VALUES (?)", [[i] for i in ids])
    known = [m for m in members if m is not None]
    assert _member_ids(con) == (len(known) != len(set(known)),
                                any(e is not None and e not in known for e in events))


def _typed_members_parquet(path: Path, select: str, options: str = "FORMAT parquet") -> Path:
    duckdb.connect().execute(f"COPY ({select}) TO '{path}' ({options})").fetchall()
    return path


TYPED_MEMBERS = ("SELECT member_id, practice_id, CAST(birth_date AS DATE) AS birth_date, "
                 f"CAST(diabetes AS BOOLEAN) AS diabetes FROM read_csv('{DATA / 'members.csv'}', all_varchar=true)")


def test_typed_parquet_members_are_read_in_place(tmp_path):
    """Members and events whose Parquet columns are already typed become views over the file
    (no copy), with the same rows as from CSV."""
    files = panel_files(tmp_path)
    files["members"] = _typed_members_parquet(tmp_path / "m.parquet", TYPED_MEMBERS)
    p = load_panel(files, requirements(), today=TODAY)
    kinds = dict(p.con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    assert kinds["members"] == "VIEW" and kinds["practices"] == "BASE TABLE"
    cols = ["member_id", "practice_id", "birth_date", "diabetes"]
    assert p.member_rows(cols) == load(sub(tmp_path, "csv")).member_rows(cols)
    assert p.member_rows(["_row"]) == [(1,), (2,), (3,)]  # Parquet rows are record numbers


def test_typed_parquet_text_is_trimmed_and_checked_in_place(tmp_path):
    """Spaces around ids are trimmed and an empty required id is E0705 with its row, as in CSV."""
    files = panel_files(tmp_path)
    padded = TYPED_MEMBERS.replace("SELECT member_id,", "SELECT ' ' || member_id || ' ' AS member_id,")
    files["members"] = _typed_members_parquet(tmp_path / "padded.parquet", padded)
    p = load_panel(files, requirements(), today=TODAY)
    assert [r[0] for r in p.member_rows(["member_id"])] == ["M1", "M2", "M3"]
    empty = TYPED_MEMBERS.replace("SELECT member_id, practice_id,",
                                  "SELECT member_id, CASE WHEN member_id = 'M2' THEN '  ' ELSE practice_id END "
                                  "AS practice_id,")
    files["members"] = _typed_members_parquet(tmp_path / "empty.parquet", empty)
    with pytest.raises(InputError) as info:
        load_panel(files, requirements(), today=TODAY)
    assert codes(info.value) == ["E0705"]
    assert "row 2: column practice_id is empty" in info.value.render()


def _diagnostics(tmp_path, background: bool, **override):
    try:
        p = load_panel(panel_files(tmp_path, **override), requirements(), today=TODAY,
                       checks_in_background=background)
        p.finish_checks()
    except InputError as exc:
        return "error", [(d.code, d.message, d.path and Path(d.path).name) for d in exc.diagnostics]
    return "ok", [(d.code, d.message, d.path and Path(d.path).name) for d in p.warnings]


WARNED = [
    ("unknown member and no events for a reader", {"events": (".csv", "practice_id,member_id,date,code\n"
                                                              "P1,M9,2011-03-01,X\n"), "measures": None}),
    ("aged 110", {"members": (".csv", M_HEAD + "M1,P1,1890-01-01,,,,\nM2,P1,1950-01-01,,,,\n")}),
    ("duplicate and unknown member at once", {
        "members": (".csv", M_HEAD + "M1,P1,1950-01-01,,,,\nM1,P2,1960-01-01,,,,\n"),
        "events": (".csv", "practice_id,member_id,date,code\nP1,M9,2011-03-01,X\n")}),
]


@pytest.mark.parametrize("case", [(c[0], {c[1]: c[2]}) for c in BAD] + WARNED, ids=lambda c: c[0])
def test_background_checks_report_what_the_synchronous_load_reports(tmp_path, case):
    """`checks_in_background` (what `capdsl eval` uses) changes when the cross-table checks run,
    never what they find or the order it is reported in."""
    _, override = case
    assert _diagnostics(sub(tmp_path, "bg"), True, **override) == _diagnostics(sub(tmp_path, "sync"), False,
                                                                               **override)


def test_an_engine_failure_on_bad_data_reports_the_data(tmp_path):
    """When the payment query fails while the background checks find bad data, the data's
    errors are what the user sees (here a duplicated member, which the contract divides by)."""
    from capdsl.pipeline import Run, evaluate
    from validation_helpers import compile_text

    text = ('contract "x":\n    currency CZK\nend\n'
            'line a "A" = 100 CZK / (count of members where member.age > 200)\n')
    _checked, program = compile_text(text)
    files = panel_files(tmp_path, members=(".csv", M_HEAD + "M1,P1,1950-01-01,,,,\nM1,P2,1960-01-01,,,,\n"))
    for engine in ("duckdb", "python"):
        with pytest.raises(InputError) as info:
            evaluate(program, Run(files={k: str(v) for k, v in files.items()}, period="2011-03", engine=engine))
        assert "E0706" in codes(info.value)


# ─────────── CSV files are read by DuckDB, never whole into Python ───────────

@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 bytes, so that a test file spans many of them."""
    import capdsl.data.read as panel_read

    monkeypatch.setattr(panel_read, "_CSV_CHUNK", 64)


def _members_csv(rows: int, bad_row: int | None = None, bad: bytes = b"\xe9") -> bytes:
    lines = [M_HEAD.encode()]
    for i in range(rows):
        sex = bad if i + 2 == bad_row else "ž".encode()  # two-byte characters: some cut by a chunk's end
        lines.append(b"M%d,P1,1950-01-01,%s,,,\n" % (i, sex))
    return b"".join(lines)


@pytest.mark.parametrize("bad_row", [3, 40, 101])
def test_a_byte_that_is_not_utf8_is_located_beyond_the_header(tmp_path, small_chunks, bad_row):
    data = _members_csv(100, bad_row=bad_row)
    offset = data.index(b"\xe9")
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".csv", data))
    [diag] = [d for d in info.value.diagnostics if d.code == "E0710"]
    assert diag.message == (f"the file is not valid UTF-8: byte 0xe9 at offset {offset} "
                            f"(line {bad_row})")  # as a whole-file decode names it


def test_characters_cut_by_a_chunks_end_are_not_an_error(tmp_path, small_chunks):
    panel = load(tmp_path, members=(".csv", _members_csv(100)))
    assert panel.count("members") == 100
    assert {r[0] for r in panel.con.execute("SELECT DISTINCT sex FROM members").fetchall()} == {"ž"}


def test_a_character_cut_by_the_end_of_the_file_is_an_error(tmp_path, small_chunks):
    data = _members_csv(20)[:-1] + b"\xc5"  # the last line ends in the first byte of "ž"
    with pytest.raises(InputError) as info:
        load(tmp_path, members=(".csv", data))
    assert any(d.code == "E0710" and f"byte 0xc5 at offset {len(data) - 1}" in d.message
               for d in info.value.diagnostics), info.value.render()


def test_blank_lines_longer_than_the_head(tmp_path, small_chunks):
    with pytest.raises(InputError) as info:
        load(tmp_path, events=(".csv", "\n" * 500))
    assert any(d.code == "E0702" and "only blank space" in d.message for d in info.value.diagnostics)
    with pytest.raises(InputError) as info:
        load(tmp_path, events=(".csv", "\n" * 500 + "practice_id,date,code\nP1,2011-03-01,X\n"))
    assert any(d.code == "E0702" and "no header" in d.message for d in info.value.diagnostics)


def test_a_csv_panel_leaves_no_raw_tables(tmp_path):
    panel = load(tmp_path)
    names = {r[0] for r in panel.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert not any(n.startswith(("raw_", "_src_")) for n in names), names


# The typed table skips the validity test of a column whose values all passed it in the checks: that
# is the same table only if, for every text, the test is never NULL and a valid text types the same
# with or without it.
_TEXTS = st.one_of(
    st.text(alphabet="0123456789-+.eE% tTrRuUfFaAlLsSyYnNoO", max_size=14),
    st.from_regex(r"\A[12][0-9]{3}-[01][0-9]-[0-3][0-9]\Z"),
    st.from_regex(r"\A[+-]?[0-9]{1,12}(\.[0-9]{0,12})?( ?%)?\Z"),
    st.sampled_from(["true", "FALSE", "1", "0", "Yes", "no", "2011-02-29", "2012-02-29", "1799-12-31",
                     "1e3", "1.5E-2", ".5", "5.", "12.0000", "0.12345678901", "15%", "9" * 30]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TEXTS, min_size=1, max_size=20))
def test_a_valid_text_types_the_same_without_the_validity_test(texts):
    from capdsl.data.panel import _typed, _valid

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS v", [texts])
    for kind in ("date", "decimal", "integer", "bool"):
        v = "NULLIF(trim(v), '')"
        rows = con.execute(f"SELECT v, {_valid(v, kind)}, CASE WHEN {_valid(v, kind)} THEN {_typed(v, kind)} END, "
                           f"{_typed(v, kind)} FROM t WHERE {v} IS NOT NULL").fetchall()
        for text, valid, strict, lenient in rows:
            assert valid is not None, (kind, text)
            if valid:
                assert strict == lenient and strict is not None, (kind, text, strict, lenient)
