"""The bad-data catalogue: every kind of bad panel input, through the CLI, on every engine.

Each case starts from a small good panel (members, practices, events,
measures as CSV), breaks one thing, and runs `capdsl eval ... -o out.csv`
with `--engine python`, `duckdb` and `spark` (spark marked and skipped
without Java/PySpark). A bad input must give exit code 1, its error code and
a message naming the file's row (nothing is silently dropped), no traceback,
no "internal error", and no output file or temporary file left behind.
Inputs that are merely unusual (extra columns, a UTF-8 BOM, CRLF line ends,
quoted line breaks) must give the same statements as the clean panel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main

CONTRACT = """\
contract "bad data":
    currency CZK
end

inputs:
    member risk: number = 1
    practice hours: hours
    event points: points = 0 points
    measure quality: percent
    param rate: CZK per member
end

line capitation "Capitation" = sum of rate * member.risk over members
line services "Services" = sum of event.points * event.quantity * 1 CZK per point over events
line q "Quality" = if measure.quality is present and measure.quality >= 50% then 10 CZK else 0 CZK
line h "Office hours" = if practice.hours >= 25 hours then 1 CZK else 0 CZK
"""

MEMBERS = ("member_id,practice_id,birth_date,risk\n"
           "M1,P1,1970-01-01,1\n"
           "M2,P1,1980-05-05,1.5\n"
           "M3,P2,2000-02-29,1\n")
PRACTICES = "practice_id,hours\nP1,30\nP2,20\n"
EVENTS = ("practice_id,member_id,date,code,points,quantity\n"
          "P1,M1,2011-03-05,A,10,1\n"
          "P2,M3,2011-03-06,B,5,2\n")
MEASURES = "practice_id,period,measure,value\nP1,2011,quality,60%\n"
BASE = {"members.csv": MEMBERS, "practices.csv": PRACTICES, "events.csv": EVENTS, "measures.csv": MEASURES}


def _spark_available() -> str | None:
    from capdsl.sql.spark_engine import available

    return available()


ENGINES = ["python", "duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture
def engine(request):
    name = request.param
    if name == "spark":
        why = _spark_available()
        if why:
            pytest.skip(why)
    return name


@dataclass
class Case:
    """One bad input: files to write (name → text, bytes, or a callable(tmp) that writes),
    extra or replaced CLI arguments, and what the run must report."""

    name: str
    files: dict = field(default_factory=dict)
    code: str | None = None          # None: the input is acceptable (exit 0, same statements)
    fragments: tuple[str, ...] = ()  # each must appear in stderr
    args: dict = field(default_factory=dict)  # option → value (None removes it)
    drop: tuple[str, ...] = ()       # base files not passed


def _parquet(table: dict, truncate: bool = False) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp / "members.parquet"
        pq.write_table(pa.table(table), path)
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        return path
    return write


def _xlsx(rows: list[list]) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        openpyxl = pytest.importorskip("openpyxl")
        book = openpyxl.Workbook()
        for row in rows:
            book.active.append(row)
        book.save(tmp / "members.xlsx")
        return tmp / "members.xlsx"
    return write


GOOD_PARQUET = {"member_id": ["M1", "M2", "M3"], "practice_id": ["P1", "P1", "P2"],
                "birth_date": ["1970-01-01", "1980-05-05", "2000-02-29"], "risk": ["1", "1.5", "1"]}

CASES = [
    # ── columns ──
    Case("missing required column", {"members.csv": "member_id,practice_id,risk\nM1,P1,1\n"},
         "E0703", ("no column 'birth_date'",)),
    Case("missing column of a contract input", {"practices.csv": "practice_id\nP1\nP2\n"},
         "E0703", ("no column 'hours'",)),
    Case("misspelt column", {"members.csv": MEMBERS.replace("birth_date", "birthdate")},
         "E0703", ("no column 'birth_date'", "did you mean 'birthdate'")),
    Case("semicolon-separated file (detected)", {"members.csv": MEMBERS.replace(",", ";")}),
    Case("column mapped from a column the file lacks", {}, "E0719", ("no column 'dob'", "birth_date"),
         args={"--column": "members.birth_date=dob"}),
    Case("unusable field separator", {}, "E0722", ("separator",), args={"--delimiter": "ab"}),
    Case("an X12 834 member loop with an impossible birth date", {"members.834": (
        Path(__file__).resolve().parent.parent / "examples" / "x12" / "members_2011-01.834").read_text(
            encoding="utf-8").replace("DMG*D8*19510714", "DMG*D8*19511314")},
         "E0743", ("segment 14 (loop 2100A", "is not read", "panel from-834"), args={"--members": "members.834"}),
    Case("no such sheet in the workbook", {"members.xlsx": _xlsx([["member_id", "practice_id", "birth_date"],
                                                                   ["M1", "P1", "1970-01-01"]])},
         "E0717", ("no sheet 'Nope'",), args={"--members": "members.xlsx#Nope"}),
    Case("a long id typed as a number in a workbook", {"members.xlsx": _xlsx(
        [["member_id", "practice_id", "birth_date"], [12345678901234567, "P1", "1970-01-01"],
         ["M2", "P1", "1980-05-05"], ["M3", "P2", "2000-02-29"]])},
         "E0721", ("row 2", "more than 15 digits"), args={"--members": "members.xlsx"}),
    Case("an error cell in a workbook", {"members.xlsx": _xlsx(
        [["member_id", "practice_id", "birth_date", "risk"], ["M1", "P1", "1970-01-01", "#DIV/0!"],
         ["M2", "P1", "1980-05-05", 1], ["M3", "P2", "2000-02-29", 1]])},
         "E0723", ("row 2, column risk", "#DIV/0!"), args={"--members": "members.xlsx"}),
    Case("column twice in the header", {"members.csv": "member_id,practice_id,birth_date,member_id\nM1,P1,1970-01-01,M1\n"},
         "E0703", ("appears twice",)),
    Case("extra columns (allowed)", {"members.csv": MEMBERS.replace("risk\n", "risk,colour\n")
                                     .replace("1\nM2", "1,red\nM2").replace("1.5\n", "1.5,blue\n")
                                     .replace("29,1\n", "29,1,green\n")}),
    # ── types ──
    Case("wrong type: number", {"members.csv": MEMBERS.replace("1.5\n", "one and a half\n")},
         "E0704", ("row 3", "column risk", "not a valid number")),
    Case("wrong type: hours", {"practices.csv": PRACTICES.replace("P2,20", "P2,twenty")},
         "E0704", ("row 3", "column hours")),
    Case("decimal comma", {"members.csv": MEMBERS.replace("1.5\n", '"1,5"\n')},
         "E0704", ("row 3", "column risk")),
    Case("thousands separator", {"practices.csv": PRACTICES.replace("P1,30", 'P1,"1,030"')},
         "E0704", ("row 2", "column hours")),
    Case("wrong type in JSON", {"members.csv": None, "members.jsonl":
                                '{"member_id": "M1", "practice_id": "P1", "birth_date": "1970-01-01", "risk": true}\n'
                                '{"member_id": "M2", "practice_id": "P1", "birth_date": "1980-05-05", "risk": [1]}\n'},
         "E0704", ("row 1", "row 2", "column risk"), args={"--members": "members.jsonl"}),
    Case("unparseable date", {"members.csv": MEMBERS.replace("1980-05-05", "2011-02-30")},
         "E0704", ("row 3", "column birth_date", "not a valid date")),
    Case("date in another format", {"members.csv": MEMBERS.replace("1980-05-05", "05/05/1980")},
         "E0704", ("row 3", "column birth_date")),
    Case("date out of range", {"members.csv": MEMBERS.replace("1980-05-05", "1700-05-05")},
         "E0704", ("row 3", "column birth_date")),
    Case("event date out of range", {"events.csv": EVENTS.replace("2011-03-06", "3011-03-06")},
         "E0704", ("row 3", "column date")),
    Case("future birth date", {"members.csv": MEMBERS.replace("1980-05-05", "2990-05-05")},
         "E0708", ("row 3", "birth date after")),
    Case("enrolment ends before it starts",
         {"members.csv": "member_id,practice_id,birth_date,enrolled_from,enrolled_to\n"
                         "M1,P1,1970-01-01,2011-03-01,2011-02-01\n"},
         "E0713", ("row 2",)),
    Case("unparseable number", {"events.csv": EVENTS.replace(",10,1", ",1e,1")},
         "E0704", ("row 2", "column points")),
    Case("negative quantity", {"events.csv": EVENTS.replace(",5,2", ",5,-2")},
         "E0709", ("row 3", "quantity is negative")),
    Case("negative points", {"events.csv": EVENTS.replace(",10,1", ",-10,1")},
         "E0709", ("row 2", "points is negative")),
    Case("nulls in required columns", {"members.csv": MEMBERS.replace("M2,P1,", "M2,,")},
         "E0705", ("row 3", "column practice_id is empty")),
    Case("null event code", {"events.csv": EVENTS.replace(",B,", ",,")},
         "E0705", ("row 3", "column code is empty")),
    # ── keys ──
    Case("duplicate member ids", {"members.csv": MEMBERS.replace("M2,", "M1,")},
         "E0706", ("rows 2, 3",)),
    Case("duplicate practice ids", {"practices.csv": PRACTICES + "P1,25\n"},
         "E0706", ("practice_id 'P1'", "rows 2, 4")),
    Case("duplicate measure", {"measures.csv": MEASURES + "P1,2011,quality,70%\n"},
         "E0706", ("rows 2, 3",)),
    Case("orphan practice ids (members)", {"members.csv": MEMBERS + "M4,P9,1990-01-01,1\n"},
         "E0707", ("'P9'", "first on row 5")),
    Case("orphan practice ids (events)", {"events.csv": EVENTS + "P7,M1,2011-03-05,A,1,1\n"},
         "E0707", ("'P7'", "first on row 4")),
    Case("bad measure period", {"measures.csv": MEASURES.replace("P1,2011", "P1,2011-13")},
         "E0704", ("row 2", "not a period")),
    Case("bad measure value", {"measures.csv": MEASURES.replace("60%", "sixty")},
         "E0704", ("row 2", "measure quality")),
    # ── files ──
    Case("empty file", {"members.csv": ""}, "E0702", ("empty",)),
    Case("blank file", {"members.csv": "\n\n  \n"}, "E0702", ("blank",)),
    Case("header-only file", {"members.csv": "member_id,practice_id,birth_date\n"},
         "E0702", ("header but no rows",)),
    Case("missing file", {"members.csv": None}, "E0701", ("no such file",)),
    Case("UTF-8 BOM (accepted)", {"members.csv": "\ufeff" + MEMBERS, "practices.csv": "\ufeff" + PRACTICES}),
    Case("CRLF (accepted)", {n: t.replace("\n", "\r\n") for n, t in BASE.items()}),
    Case("quoted newlines (accepted)", {"members.csv": "member_id,practice_id,birth_date,risk,note\n"
                                                       'M1,P1,1970-01-01,1,"two\nlines"\n'
                                                       "M2,P1,1980-05-05,1.5,\n"
                                                       'M3,P2,2000-02-29,1,"a, b"\n'}),
    Case("quoted newline before a bad row", {"members.csv": "member_id,practice_id,birth_date,risk,note\n"
                                                            'M1,P1,1970-01-01,1,"two\nlines"\n'
                                                            "M2,P1,1980-05-05,x,\n"},
         "E0704", ("row 3", "column risk")),
    Case("unclosed quote", {"members.csv": MEMBERS.replace("M2,P1", '"M2,P1')}, "E0716", ("malformed CSV",)),
    Case("too many fields", {"members.csv": MEMBERS.replace("1.5\n", "1.5,extra,more\n")},
         "E0716", ("line 3",)),
    Case("non-UTF-8 bytes", {"members.csv": MEMBERS.encode().replace(b"M2", b"M\xe92")},
         "E0710", ("not valid UTF-8", "line 3")),
    Case("UTF-16 file", {"members.csv": MEMBERS.encode("utf-16")}, "E0710", ("UTF-16",)),
    Case("0-byte Parquet", {"members.csv": None, "members.parquet": b""}, "E0702", ("empty",),
         args={"--members": "members.parquet"}),
    Case("truncated Parquet", {"members.csv": None, "members.parquet": _parquet(GOOD_PARQUET, truncate=True)},
         "E0711", ("truncated or corrupt",), args={"--members": "members.parquet"}),
    Case("not Parquet at all", {"members.csv": None, "members.parquet": MEMBERS},
         "E0711", ("truncated or corrupt",), args={"--members": "members.parquet"}),
    Case("Parquet with a bad value", {"members.csv": None, "members.parquet": _parquet(
        {**GOOD_PARQUET, "risk": ["1", "x", "1"]})}, "E0704", ("row 2", "column risk"),
        args={"--members": "members.parquet"}),
    Case("malformed JSON lines", {"members.csv": None, "members.jsonl":
                                  '{"member_id": "M1", "practice_id": "P1", "birth_date": "1970-01-01"}\n'
                                  '{"member_id": "M2", "practice_id": "P1", "birth_date": \n'
                                  '{"member_id": "M3", "practice_id": "P2", "birth_date": "2000-02-29"}\n'
                                  '[1, 2]\n'},
         "E0716", ("line 2", "line 4"), args={"--members": "members.jsonl"}),
    Case("unknown file extension", {"members.txt": MEMBERS}, "E0906", ("cannot tell the format",),
         args={"--members": "members.txt"}),
    # ── run options ──
    Case("unknown period string", {}, "E0901", ("2011-13",), args={"--period": "2011-13"}),
    Case("period that is not a period", {}, "E0901", ("March",), args={"--period": "March"}),
    Case("missing --set parameter", {}, "E0903", ("parameter rate", "--set"), args={"--set": None}),
    Case("--set parameter of the wrong unit", {}, "E0904", ("rate",), args={"--set": "rate=100 EUR"}),
]

OK_CASES = [c for c in CASES if c.code is None]
BAD_CASES = [c for c in CASES if c.code is not None]


def _materialise(tmp: Path, case: Case) -> dict[str, str]:
    files = dict(BASE)
    files.update(case.files)
    for name, content in files.items():
        path = tmp / name
        if content is None:
            continue
        if callable(content):
            content(tmp)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
    (tmp / "c.cap").write_text(CONTRACT, encoding="utf-8")
    args = {"--members": "members.csv", "--practices": "practices.csv", "--events": "events.csv",
            "--measures": "measures.csv", "--period": "2011-03", "--set": "rate=100"}
    args.update(case.args)
    return {k: (str(tmp / v) if k in ("--members", "--practices", "--events", "--measures") else v)
            for k, v in args.items() if v is not None}


def run_cli(tmp: Path, args: dict, engine: str, out: str = "out.csv"):
    argv = ["eval", str(tmp / "c.cap"), "--engine", engine, "--format", "csv", "-o", str(tmp / out)]
    for k, v in args.items():
        argv += [k, v]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(".out.") or p.name == "out.csv")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The clean panel's statements (python engine)."""
    tmp = tmp_path_factory.mktemp("baseline")
    args = _materialise(tmp, Case("clean"))
    result = run_cli(tmp, args, "python")
    assert result.exit_code == 0, _stderr(result)
    return (tmp / "out.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
def test_bad_input_is_reported(tmp_path, case, engine):
    args = _materialise(tmp_path, case)
    result = run_cli(tmp_path, args, engine)
    err = _stderr(result)
    assert result.exit_code == 1, f"exit {result.exit_code}\n{err}"
    assert f"[{case.code}]" in err, err
    for fragment in case.fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert "internal error" not in err and "Traceback" not in err, err
    assert _leftovers(tmp_path) == [], "an output or temporary file was left behind"


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: c.name)
def test_unusual_but_valid_input_gives_the_same_statements(tmp_path, case, engine, baseline):
    args = _materialise(tmp_path, case)
    result = run_cli(tmp_path, args, engine)
    err = _stderr(result)
    assert result.exit_code == 0, err
    assert "internal error" not in err
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == baseline


def test_the_catalogue_covers_every_panel_error_code():
    """Every E07xx error code documented as in use has at least one case here."""
    from capdsl.data import panel
    from capdsl.data import read as panel_read

    codes = set(re.findall(r'"(E07[0-9]{2})"', Path(panel.__file__).read_text(encoding="utf-8")
                           + Path(panel_read.__file__).read_text(encoding="utf-8")))
    covered = {c.code for c in BAD_CASES}
    assert codes - covered == set(), f"no bad-data case for {sorted(codes - covered)}"


def test_many_bad_rows_are_counted_not_dropped(tmp_path):
    """More bad rows than are listed: the rest are counted ("… and N more"), never silently skipped."""
    rows = "".join(f"M{i},P1,not-a-date,1\n" for i in range(50))
    case = Case("many", {"members.csv": "member_id,practice_id,birth_date,risk\n" + rows})
    args = _materialise(tmp_path, case)
    result = run_cli(tmp_path, args, "python")
    err = _stderr(result)
    assert result.exit_code == 1
    assert "row 2," in err and "row 21," in err
    assert "and 30 more" in err, err
