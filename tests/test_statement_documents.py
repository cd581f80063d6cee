"""`capdsl eval --format html|pdf`: a printable statement per practice, checked against the JSON output's
amounts in the page as written and as headless Chromium renders it, and a PDF with a page per practice."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main
from statement_panel import contract, eval_argv, write_panel

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "chromium is not installed (apt-get install chromium; `make system-deps` does it)"

BODY = '''inputs:
    practice akord: bool = false
    measure quality: percent
    param fee: CZK = 10 CZK
end

line capitation "Capitation" = sum of 100.333 CZK over members ref "Annex 1, capitation"

line supplement "AKORD supplement":
    amount fee * count of members
    applies when practice.akord
    ref "Annex 2"
end

'''
CONTRACT = contract("Documents test", BODY, regulation="Drug-cost regulation",
                    bonus_ref="Annex 3, quality bonus")

SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("x")'
MEMBERS = f"""member_id,practice_id,birth_date
M1,P1,1970-01-01
M2,P1,1980-05-05
M3,"{SCRIPT}",1990-01-01
M4,"{FORMULA.replace('"', '""')}",1960-01-01
M5,P2,1950-03-03
"""
PRACTICES = f"""practice_id,akord,name
P1,true,"Dr. Novák & <b>Co</b>"
P2,false,
"{SCRIPT}",true,Scripted
"{FORMULA.replace('"', '""')}",false,Formula
"""
IDS = ["P1", "P2", SCRIPT, FORMULA]


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    folder = write_panel(tmp_path_factory.mktemp("documents"), CONTRACT, MEMBERS, PRACTICES)
    (folder / "plain.cap").write_text(CONTRACT.replace("    report in EUR at 25.28 CZK per EUR\n", ""),
                                      encoding="utf-8")
    return folder


args = eval_argv


def run(*argv: str, env=None):
    return CliRunner(env=env).invoke(main, list(argv), catch_exceptions=False)


def as_json(folder: Path, *more: str, contract: str = "c.cap") -> dict:
    out = run(*args(folder, *more, "--format", "json", contract=contract))
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


# ─────────────────────────────── reading a page ────────────────────────────

VOID = {"meta", "col", "br", "img", "link", "hr", "input", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[Node]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and (cls is None or cls in c.classes) and \
                        all(c.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                    found.append(c)
                found += c.all(tag, cls, **attrs)
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs) -> Node:
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag):
        at = self.at
        while at is not None and at.tag != tag:
            at = at.parent
        if at is not None and at.parent is not None:
            self.at = at.parent

    def handle_data(self, data):
        self.at.children.append(data)


def parse(page: str) -> Node:
    builder = _Builder()
    builder.feed(page)
    return builder.root


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", "").replace("†", "").strip())


def statements(page: str) -> dict[str, Node]:
    found = {s.attrs["data-practice"]: s for s in parse(page).all("section", "statement")}
    assert len(found) == len(parse(page).all("section", "statement")), "one section per practice"
    return found


def assert_matches_json(page: str, data: dict) -> None:
    """Every practice's lines, totals and months in the page equal the JSON output's."""
    found = statements(page)
    assert list(found) == [st["practice_id"] for st in data["statements"]]
    for st in data["statements"]:
        section = found[st["practice_id"]]
        for line in st["lines"]:
            row = section.one("tr", "line", data_line=line["id"])
            assert number(row.one("td", "amount").text()) == Decimal(line["amount"]), (st["practice_id"], line)
            if data["report_currency"]:
                assert number(row.one("td", "report").text()) == Decimal(line["report_amount"])
            assert line["label"] in row.text()
            if line["ref"]:
                assert line["ref"] in row.one("td", "ref").text()
            if line["note"]:
                assert line["note"] in row.text()
        assert number(section.one("td", "total").text()) == Decimal(st["total"])
        if data["report_currency"]:
            assert number(section.one("td", "report-total").text()) == Decimal(st["report_total"])
        for month in st.get("months") or ():
            row = section.one("tr", "month", data_month=month["month"])
            for line in month["lines"]:
                assert number(row.one("td", data_line=line["id"]).text()) == Decimal(line["amount"])
            assert number(row.one("td", "month-total").text()) == Decimal(month["total"])


# ─────────────────────────────── the page ──────────────────────────────────

def test_the_page_states_every_line_and_total_as_the_json_does(panel, tmp_path):
    target = tmp_path / "statements.html"
    out = run(*args(panel, "--period", "2011", "--by", "month", "-o", str(target)))  # the format from .html
    assert out.exit_code == 0, out.output
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert_matches_json(page, as_json(panel, "--period", "2011", "--by", "month"))
    section = statements(page)["P1"]
    facts = {dt.text(): dd.text() for dt, dd in zip(section.all("dt"), section.all("dd"))}
    assert facts["Practice"] == "P1" and facts["Name"] == "Dr. Novák & <b>Co</b>"
    assert facts["Period"] == "2011 (2011-01 to 2011-12, 12 months)"
    assert facts["Report currency"] == "EUR at 25.28 CZK per EUR"
    assert "Name" not in {dt.text() for dt in statements(page)["P2"].all("dt")}  # an empty name is left out
    rounding = section.one("div", "rounding").text()
    assert "half up to 0.01 CZK, once per line and month" in rounding and "25.28 CZK per EUR" in rounding
    assert "rounding half_up 0.01 per line" in rounding


def test_the_page_is_self_contained(panel):
    out = run(*args(panel, "--period", "2011-Q2", "--format", "html"))
    page = out.stdout
    assert "<script" not in page.lower().replace("&lt;script", "")
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page, re.I)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "break-after:page" in page and "@page" in page


def test_hostile_ids_and_names_are_text(panel):
    out = run(*args(panel, "--period", "2011-Q2", "--format", "html"))
    page = out.stdout
    assert SCRIPT not in page and "<b>Co</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "Dr. Novák &amp; &lt;b&gt;Co&lt;/b&gt;" in page
    found = statements(page)
    assert set(found) == set(IDS)
    # a formula is shown as written (a page is not a spreadsheet: nothing to neutralise, nothing to run)
    assert found[FORMULA].one("dd", "practice").text() == FORMULA


def test_negative_amounts_are_marked(panel):
    page = run(*args(panel, "--period", "2011-Q2", "--format", "html")).stdout
    row = statements(page)["P1"].one("tr", "line", data_line="regulation")
    cell = row.one("td", "amount")
    assert cell.text().startswith("-") and cell.one("span", "neg")
    assert "deduction" in row.one("td", "label").text()
    assert "Amounts in red with a minus sign are deductions" in statements(page)["P1"].text()


def test_pool_installments_paid_and_withheld(panel):
    page = run(*args(panel, "--period", "2011", "--format", "html")).stdout
    data = as_json(panel, "--period", "2011")
    for st in data["statements"]:
        pool = statements(page)[st["practice_id"]].one("div", "pool", data_pool="bonus")
        rows = pool.all("tr", "installment")
        line = next(ln for ln in st["lines"] if ln["id"] == "bonus")
        assert len(rows) == len(line["installments"]) == 2
        for row, inst in zip(rows, line["installments"]):
            cells = [c.text() for c in row.all("td")]
            assert cells[0] == f"{inst.get('when') or 'Q' + str(inst['quarter'])} 2011" and cells[1] == inst["share"]
            assert number(cells[2]) == Decimal(inst["amount"])
            assert cells[3] == ("paid" if inst["paid"] else "withheld")
        assert "annual pool 1,200.00 CZK" in pool.text()
    p2 = statements(page)["P2"].one("div", "pool", data_pool="bonus")
    assert [r.all("td")[3].text() for r in p2.all("tr", "installment")] == ["paid", "withheld"]
    assert "withheld: Q4" in statements(page)["P2"].one("tr", "line", data_line="bonus").text()
    assert "measure.quality is present" in p2.text()  # the installment's condition, as written


def test_practice_filter_shows_only_those_practices(panel):
    page = run(*args(panel, "--period", "2011-Q2", "--format", "html", "--practice", "P2",
                     "--practice", SCRIPT)).stdout
    assert list(statements(page)) == [SCRIPT, "P2"] or list(statements(page)) == ["P2", SCRIPT]
    assert "Dr. Novák" not in page and ">P1<" not in page  # nothing of another practice
    assert_matches_json(page, as_json(panel, "--period", "2011-Q2", "--practice", "P2", "--practice", SCRIPT))


def test_without_a_report_currency_there_is_no_report_column(panel):
    page = run(*args(panel, "--period", "2011-Q2", "--format", "html", contract="plain.cap")).stdout
    assert_matches_json(page, as_json(panel, "--period", "2011-Q2", contract="plain.cap"))
    assert "EUR" not in page and not parse(page).all("td", "report")


def test_provenance(panel, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"fee": "12 CZK"}', encoding="utf-8")
    out = run(*args(panel, "--period", "2011-Q2", "--format", "html", "--params", str(params)),
              env={"SOURCE_DATE_EPOCH": "1300000000"})
    assert out.exit_code == 0, out.output
    section = statements(out.stdout)["P1"]
    files = {row.all("td")[0].text(): row.all("td") for row in section.one("table", "prov").all("tr")[1:]}
    for role, path in (("contract", panel / "c.cap"), ("members", panel / "members.csv"),
                       ("practices", panel / "practices.csv"), ("measures", panel / "measures.csv"),
                       ("parameters", params)):
        cells = files[role]
        assert cells[1].text() == str(path)
        assert cells[2].text() == hashlib.sha256(path.read_bytes()).hexdigest(), role
        assert cells[3].text() == f"{path.stat().st_size:,} bytes"
    facts = {dt.text(): dd.text() for dt, dd in zip(section.one("dl", "prov-facts").all("dt"),
                                                     section.one("dl", "prov-facts").all("dd"))}
    assert facts["Parameters"] == f"fee = 12 CZK ({params})"
    assert facts["Run at (UTC)"] == "2011-03-13T07:06:40Z"
    assert facts["Engine"] == "duckdb" and re.fullmatch(r"\d+\.\d+\.\d+\S*", facts["capdsl"])
    # --set over the file; without SOURCE_DATE_EPOCH the time is now, in UTC
    out = run(*args(panel, "--period", "2011-Q2", "--format", "html", "--set", "fee=11 CZK"))
    section = statements(out.stdout)["P1"]
    facts = {dt.text(): dd.text() for dt, dd in zip(section.one("dl", "prov-facts").all("dt"),
                                                     section.one("dl", "prov-facts").all("dd"))}
    assert facts["Parameters"] == "fee = 11 CZK (--set)"
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", facts["Run at (UTC)"])


def test_standard_input_is_named_and_hashed(panel):
    data = (panel / "members.csv").read_bytes()
    cli = ["eval", str(panel / "c.cap"), "--members", "-", "--practices", str(panel / "practices.csv"),
           "--period", "2011-Q2", "--format", "html", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "capdsl", *cli], input=data, capture_output=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    section = statements(done.stdout.decode("utf-8"))["P1"]
    row = next(r for r in section.one("table", "prov").all("tr")[1:] if r.all("td")[0].text() == "members")
    assert row.all("td")[1].text() == "<stdin>"
    assert row.all("td")[2].text() == hashlib.sha256(data).hexdigest()


def test_names_follow_the_column_mapping(panel, tmp_path):
    practices = tmp_path / "practices.csv"
    practices.write_text("practice_id;akord;nazev\nP1;true;Ordinace Novák\nP2;false;MUDr. Dvořák\n"
                         f'"{SCRIPT}";true;x\n"{FORMULA.replace(chr(34), chr(34) * 2)}";false;y\n',
                         encoding="utf-8")
    out = run("eval", str(panel / "c.cap"), "--members", str(panel / "members.csv"), "--practices",
              str(practices), "--column", "practices.name=nazev", "--period", "2011-Q2", "--format", "html",
              "--quiet")
    assert out.exit_code == 0, out.output
    assert statements(out.stdout)["P2"].one("dd", "name").text() == "MUDr. Dvořák"


def test_summary_is_one_page(panel):
    page = run(*args(panel, "--period", "2011-Q2", "--format", "html", "--summary")).stdout
    sections = parse(page).all("section", "statement")
    assert len(sections) == 1
    data = as_json(panel, "--period", "2011-Q2", "--summary")
    rows = {r.attrs["data-practice"]: r for r in sections[0].all("tr", "summary-row")}
    for row in data["summary"]:
        assert number(rows[row["practice_id"]].all("td")[2].text()) == Decimal(row["total"])


# ─────────────────────────────── where it goes ─────────────────────────────

def test_html_to_standard_output_and_by_extension(panel, tmp_path):
    out = run(*args(panel, "--period", "2011-Q2", "--format", "html", "-o", "-"))
    assert out.exit_code == 0 and out.stdout.startswith("<!DOCTYPE html>")
    out = run(*args(panel, "--period", "2011-Q2", "-o", str(tmp_path / "s.htm")))
    assert out.exit_code == 0 and (tmp_path / "s.htm").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_missing_output_folder_is_refused_before_any_work(panel, tmp_path):
    for name in ("s.html", "s.pdf"):
        out = run(*args(panel, "--period", "2011-Q2", "-o", str(tmp_path / "missing" / name)))
        assert out.exit_code == 1
        assert "E0930" in out.output and "does not exist" in out.output and "Traceback" not in out.output


def test_detail_is_not_a_document(panel):
    out = run(*args(panel, "--period", "2011-Q2", "--detail", "member", "--format", "html"))
    assert out.exit_code == 1 and "E0906" in out.output and "not html" in out.output


def test_no_chromium_is_a_clear_error(panel, tmp_path, monkeypatch):
    target = tmp_path / "s.pdf"
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it
    monkeypatch.delenv("CAPDSL_CHROMIUM", raising=False)
    out = run(*args(panel, "--period", "2011-Q2", "-o", str(target)))
    assert out.exit_code == 1 and "E0918" in out.output and "apt-get install chromium" in out.output
    assert "Traceback" not in out.output and not target.exists()
    monkeypatch.setenv("CAPDSL_CHROMIUM", str(tmp_path / "nowhere"))
    out = run(*args(panel, "--period", "2011-Q2", "-o", str(target)))
    assert out.exit_code == 1 and "E0918" in out.output and "CAPDSL_CHROMIUM" in out.output


def test_a_failing_printer_leaves_the_old_file(panel, tmp_path, monkeypatch):
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("CAPDSL_CHROMIUM", str(fake))
    target = tmp_path / "s.pdf"
    target.write_bytes(b"%PDF-old")
    out = run(*args(panel, "--period", "2011-Q2", "-o", str(target)))
    assert out.exit_code == 1 and "E0919" in out.output and "cannot open display" in out.output
    assert target.read_bytes() == b"%PDF-old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_printer_that_hangs_is_stopped_with_its_helpers(panel, tmp_path, monkeypatch):
    import time

    import capdsl.tools.statement_doc as statement_doc

    helper = tmp_path / "helper.pid"
    fake = tmp_path / "fake-chromium"
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {helper}\nwait\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("CAPDSL_CHROMIUM", str(fake))
    monkeypatch.setattr(statement_doc, "PRINT_TIMEOUT", 1)
    target = tmp_path / "s.pdf"
    started = time.monotonic()
    out = run(*args(panel, "--period", "2011-Q2", "-o", str(target)))
    assert out.exit_code == 1 and "E0919" in out.output and "within 1 s" in out.output
    assert time.monotonic() - started < 30 and not target.exists()
    pid = int(helper.read_text())
    for _ in range(50):  # the helper was killed with the printer's process group (a zombie is dead too)
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the printer's helper process {pid} is still running")


def test_pdf_is_not_printed_to_a_terminal(panel):
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "capdsl", *args(panel, "--period", "2011-Q2", "--format",
                                                                     "pdf")],
                              stdout=follower, stderr=subprocess.PIPE, timeout=120, cwd=ROOT)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 1
    assert b"E0917" in done.stderr and b"--format pdf is not printed to a terminal" in done.stderr
    assert b"-o statements.pdf" in done.stderr


# ─────────────────────────────── in the browser ────────────────────────────

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium(*argv: str, timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *argv], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "LANG": "C.UTF-8"})


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("view", [(), ("--by", "month")], ids=["period", "by-month"])
def test_rendered_in_chromium_the_statements_are_the_json(panel, tmp_path, view):
    target = tmp_path / "statements.html"
    out = run(*args(panel, "--period", "2011", *view, "-o", str(target)))
    assert out.exit_code == 0, out.output
    dom = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", target.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert_matches_json(rendered, as_json(panel, "--period", "2011", *view))
    # the hostile id is a text node in the rendered DOM, not an element; the page ran no script
    assert "<script" not in rendered.lower().replace("&lt;script", "")
    assert statements(rendered)[SCRIPT].one("dd", "practice").text() == SCRIPT
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    shot = tmp_path / "shot.png"
    result = chromium("--window-size=1000,1600", f"--screenshot={shot}", target.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000  # a blank page compresses to a few KB


def pdf_pages(data: bytes) -> list[str]:
    import io

    pypdf = pytest.importorskip("pypdf")
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_pdf_has_a_page_per_practice(panel, tmp_path):
    target = tmp_path / "statements.pdf"
    target.write_bytes(b"old")
    out = run(*args(panel, "--period", "2011-Q4", "-o", str(target)))
    assert out.exit_code == 0, out.output
    data = target.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = pdf_pages(data)
    assert len(pages) == len(IDS)
    js = as_json(panel, "--period", "2011-Q4")
    for page, st in zip(pages, js["statements"]):
        assert st["practice_id"] in page
        flat = page.replace("\n", " ")
        assert f"{Decimal(st['total']):,.2f}" in flat and "Rounding and provenance" in flat
    assert "withheld" in pages[1]  # P2: the Q4 installment


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_pdf_to_a_pipe(panel):
    out = run(*args(panel, "--period", "2011-Q2", "--format", "pdf", "-o", "-", "--practice", "P1"))
    assert out.exit_code == 0, out.output
    assert out.stdout_bytes.startswith(b"%PDF-") and out.stdout_bytes.rstrip().endswith(b"%%EOF")
    assert len(pdf_pages(out.stdout_bytes)) == 1


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_sample_contract_as_a_pdf(tmp_path):
    """The README's sample run (`make sample`) for a quarter by month: a page per practice, each with the
    JSON's total in both currencies."""
    sample = ["eval", "contracts/cz_vzp_2011_adult.cap", "--members", "examples/members.csv", "--practices",
              "examples/practices.csv", "--events", "examples/events.csv", "--measures", "examples/measures.csv",
              "--period", "2011-Q2", "--by", "month", "--quiet"]
    target = tmp_path / "statements.pdf"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        out = run(*sample, "-o", str(target))
        assert out.exit_code == 0, out.output
        js = json.loads(run(*sample, "--format", "json").stdout)
        page = run(*sample, "--format", "html").stdout
    finally:
        os.chdir(cwd)
    assert_matches_json(page, js)
    pages = pdf_pages(target.read_bytes())
    assert len(pages) == len(js["statements"])
    for text, st in zip(pages, js["statements"]):
        flat = text.replace("\n", " ")
        assert st["practice_id"] in flat
        assert f"{Decimal(st['total']):,.2f}" in flat and f"{Decimal(st['report_total']):,.2f}" in flat
        assert hashlib.sha256((ROOT / "contracts/cz_vzp_2011_adult.cap").read_bytes()).hexdigest()[:16] in \
            flat.replace(" ", "")
