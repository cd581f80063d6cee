"""The project file (capdsl.toml, or [tool.capdsl] in pyproject.toml): the panel files, how they are
written, column mappings, parameters and the period, so commands need not repeat them; the command
line overrides it; a bad file is an error naming the file and the key."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.data.project import load_project
from capdsl.errors import UsageError
from capdsl.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
PANEL = ROOT / "tests" / "panels" / "cz_vzp_2011_adult"
CONTRACT = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
TABLES = ("members", "practices", "events", "measures")


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _explicit(period="2011-Q1", *extra):
    args = ["eval", CONTRACT, "--no-project", "--period", period, "--format", "csv"]
    for t in TABLES:
        args += [f"--{t}", PANEL / f"{t}.csv"]
    result = _invoke(*args, *extra)
    assert result.exit_code == 0, _stderr(result)
    return result.stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder holding the panel under data/ with a renamed birth-date column, as the current folder."""
    data = tmp_path / "data"
    data.mkdir()
    for t in TABLES:
        shutil.copy(PANEL / f"{t}.csv", data / f"{t}.csv")
    members = (data / "members.csv").read_text(encoding="utf-8")
    (data / "members.csv").write_text(members.replace("birth_date", "dob", 1), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(folder: Path, text: str, name="capdsl.toml") -> Path:
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


GOOD = """\
period = "2011-Q1"

[panel]
dir = "data"

[columns.members]
birth_date = "dob"

[params]
national_average_drug_cost = 250
"""


def test_a_project_run_equals_the_explicit_run(project):
    _write(project, GOOD)
    result = _invoke("eval", CONTRACT, "--format", "csv")
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == _explicit()


def test_the_command_line_overrides_the_project(project):
    _write(project, GOOD)
    later = _invoke("eval", CONTRACT, "--format", "csv", "--period", "2011-03")
    assert later.exit_code == 0, _stderr(later)
    assert later.stdout == _explicit("2011-03")
    dearer = _invoke("eval", CONTRACT, "--format", "csv", "--set", "national_average_drug_cost=300")
    assert dearer.stdout == _explicit("2011-Q1", "--set", "national_average_drug_cost=300")
    assert dearer.stdout != _explicit()
    # an explicit members file replaces the folder's (this one has birth_date: the mapping must go too)
    own = _invoke("eval", CONTRACT, "--format", "csv", "--members", PANEL / "members.csv")
    assert own.exit_code == 1 and "E0719" in _stderr(own)
    ignored = _invoke("eval", CONTRACT, "--no-project", "--members", PANEL / "members.csv")
    assert ignored.exit_code == 1 and "no period was given" in _stderr(ignored)


def test_explain_and_diff_read_the_project(project):
    _write(project, GOOD)
    explained = _invoke("explain", CONTRACT, "--practice", "P1")
    assert explained.exit_code == 0, _stderr(explained)
    assert "practice P1" in explained.stdout
    compared = _invoke("diff", CONTRACT, CONTRACT, "--no-drivers", "--format", "csv")
    assert compared.exit_code == 0, _stderr(compared)


def test_pyproject_tool_capdsl(project):
    _write(project, "[project]\nname = 'x'\n\n" + GOOD.replace("[panel]", "[tool.capdsl.panel]")
           .replace("[columns.members]", "[tool.capdsl.columns.members]").replace("[params]", "[tool.capdsl.params]")
           .replace('period = "2011-Q1"', "[tool.capdsl]\nperiod = \"2011-Q1\""), "pyproject.toml")
    result = _invoke("eval", CONTRACT, "--format", "csv")
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == _explicit()


def test_files_named_one_by_one_with_reading_options(project, tmp_path):
    (project / "cz").mkdir()
    for t in TABLES:
        text = (PANEL / f"{t}.csv").read_text(encoding="utf-8").replace(",", ";")
        (project / "cz" / f"{t}.csv").write_text(text, encoding="utf-8")
    _write(project, '[panel]\nmembers = "cz/members.csv"\npractices = "cz/practices.csv"\nevents = "cz/events.csv"\n'
                    'measures = "cz/measures.csv"\ndelimiter = ";"\n')
    result = _invoke("eval", CONTRACT, "--format", "csv", "--period", "2011-Q1")
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == _explicit()
    assert "W0720" not in _stderr(result)  # the separator was given, not detected


def test_parameters_keep_their_digits(tmp_path):
    path = _write(tmp_path, '[params]\na = 250.10\nb = true\nc = 2011-03-01\nd = "15 %"\ne = 3\n')
    assert load_project(path).params == {"a": "250.10", "b": "true", "c": "2011-03-01", "d": "15 %", "e": "3"}
    assert Decimal(load_project(path).params["a"]) == Decimal("250.10")


@pytest.mark.parametrize("text, code, fragments", [
    ("period = \n", "E0950", ("not valid TOML", "line 1")),
    ("periode = '2011'\n", "E0951", ("unknown key 'periode'", "period, panel, columns")),
    ("[panel]\nmember = 'm.csv'\n", "E0951", ("unknown key 'panel.member'", "members, practices")),
    ("period = 2011\n", "E0951", ("period:", "in quotes")),
    ("[panel]\ndecimal_comma = 'yes'\n", "E0951", ("panel.decimal_comma", "valid boolean")),
    ("[columns.member]\nbirth_date = 'dob'\n", "E0951", ("columns.member",)),
    ("[params]\nrate = [1, 2]\n", "E0951", ("params.rate",)),
    ("[panel]\ndir = 'nowhere'\n", "E0701", ("not a folder",)),
])
def test_bad_project_files(tmp_path, text, code, fragments):
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_project(path)
    rendered = info.value.render()
    assert info.value.code == code, rendered
    assert str(path) in rendered
    for fragment in fragments:
        assert fragment in rendered, rendered


def test_a_bad_project_file_stops_the_command(project):
    _write(project, "[panel]\ndir = 3\n")
    result = _invoke("eval", CONTRACT)
    assert result.exit_code == 1
    assert "capdsl.toml: error[E0951]: panel.dir" in _stderr(result)


def test_panel_folders(tmp_path):
    (tmp_path / "p").mkdir()
    result = _invoke("eval", CONTRACT, "--panel", tmp_path / "p", "--period", "2011-03")
    assert result.exit_code == 1 and "has no members file" in _stderr(result)
    for name in ("members.csv", "members.xlsx"):
        (tmp_path / "p" / name).write_text("x", encoding="utf-8")
    result = _invoke("eval", CONTRACT, "--panel", tmp_path / "p", "--period", "2011-03")
    assert result.exit_code == 1 and "E0952" in _stderr(result) and "members.csv, members.xlsx" in _stderr(result)
    result = _invoke("eval", CONTRACT, "--panel", PANEL, "--period", "2011-Q1", "--format", "csv")
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == _explicit()


def test_no_members_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("eval", CONTRACT, "--period", "2011-03")
    assert result.exit_code == 1
    assert "E0701" in _stderr(result) and "--panel DIR" in _stderr(result)
