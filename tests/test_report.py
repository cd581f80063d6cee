"""The HTML impact report: self-contained, escaped, atomic; charts that read for large deltas; every
practice in a searchable, sortable table; provenance; and a layout checked in a real browser at
desktop and phone widths (headless Chromium driven over its DevTools pipe)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from capdsl import __version__
from capdsl.pipeline import Run, compiled_file
from capdsl.tools.impact import diff
from capdsl.tools.report import (CSP, SCRIPT, SCRIPT_HASH, Context, context_for, histogram_bins, histogram_chart,
                                 render_html, write_report)
from validation_helpers import BASE, compile_text, variant, write_panel

ROOT = Path(__file__).resolve().parent.parent
NEW = variant(BASE, ("65 and over: 2.00", "65 and over: 2.40"), ("45 CZK otherwise", "40 CZK otherwise"),
              ('line services "Services" = sum of event.points * point_value over events\n',
               'line services "Services" = sum of event.points * point_value over events\n'
               'line bonus "Diabetes bonus" = sum of 10 CZK over members where member.diabetes\n'))
NAMES = {"P0": "MUDr. Nováková s.r.o.", "P1": "Praxe <b>Sever</b> & \"syn\"", "P3": "Ordinace Jih"}


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    files = write_panel(tmp_path_factory.mktemp("report"), members=90, practices=6)
    with open(files["practices"], newline="") as fh:
        rows = list(csv.reader(fh))
    with open(files["practices"], "w", newline="") as fh:  # a `name` column, as payers' files have
        w = csv.writer(fh)
        w.writerow([*rows[0], "name"])
        for row in rows[1:]:
            w.writerow([*row, NAMES.get(row[0], "")])
    return files


@pytest.fixture(scope="module")
def impact(panel):
    run = Run(files=panel, period="2011-03", engine="python")
    return diff(compile_text(BASE, "old.cap")[1], compile_text(NEW, "new.cap")[1], run)


@pytest.fixture(scope="module")
def ffs(tmp_path_factory):
    """Capitation vs capped fee-for-service on the bundled panel: every practice near −90 %."""
    ex = ROOT / "examples"
    run = Run(files={t: str(ex / f"{t}.csv") for t in ("members", "practices", "events", "measures")},
              period="2011", engine="duckdb")
    old, new = (str(ROOT / "contracts" / c) for c in ("cz_vzp_2011_adult.cap", "cz_vzp_2011_ffs_capped.cap"))
    result = diff(compiled_file(old).tree, compiled_file(new).tree, run)
    return result, run


def texts(svg: str) -> list[str]:
    return [html_unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def figure(page: str, fig: str) -> str:
    block = page[page.index(f'id="{fig}"'):]
    return block[:block.index("</figure>")]


def table_rows(page: str, table_id: str) -> list[str]:
    block = page[page.index(f'id="{table_id}"'):]
    block = block[block.index("<tbody>"):block.index("</tbody>")]
    return re.findall(r"<tr[ >].*?</tr>", block)


# ─────────────────────────────── the page ───────────────────────────────────

def test_page_is_self_contained(impact):
    page = render_html(impact)
    assert page.startswith("<!DOCTYPE html>")
    for fig in ("chart-histogram", "chart-waterfall", "chart-age"):
        assert "<svg" in figure(page, fig)
    # one inline script (sorting, searching), allowed by its hash and nothing else
    assert page.lower().count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    assert SCRIPT_HASH == "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP.replace(chr(39), "&#x27;")}">' in page
    assert "default-src 'none'" in CSP and f"script-src '{SCRIPT_HASH}'" in CSP
    # nothing fetched from the network: no src/href to http(s); SVG namespaces are not fetches
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "@import" not in page and "url(" not in page


def test_every_practice_and_line_is_in_the_tables(impact):
    page = render_html(impact, Context(names=NAMES))
    rows = table_rows(page, "practice-table")
    assert len(rows) == len(impact.practices) == 6
    # sorted by delta, the largest loss first; each row carries its exact amounts as sort keys
    deltas = [Decimal(re.findall(r'data-v="([^"]*)"', r)[0]) for r in rows]
    assert deltas == sorted(p.delta for p in impact.practices)
    for p in impact.practices:
        row = next(r for r in rows if f'<span class="id">{p.practice_id}</span>' in r or
                   f'<td class="t">{p.practice_id}' in r)
        assert f'data-v="{p.delta}"' in row and f'data-v="{p.old}"' in row and f'data-v="{p.new}"' in row
    assert "MUDr. Nováková s.r.o." in page  # practice names where the panel has them
    lines = table_rows(page, "line-table")
    assert len(lines) == len(impact.lines)
    assert "Diabetes bonus" in page and "added" in page
    # a Δ column per line, headed by its label (its id as the title)
    head = page[page.index('id="practice-table"'):]
    head = head[:head.index("</thead>")]
    assert all(f"Δ {ln.label}" in head for ln in impact.lines if ln.old or ln.new)


def test_page_states_the_numbers(impact):
    page = render_html(impact)
    assert f"{impact.distribution.losing_over_5pct}</span>" in page
    for loser in impact.distribution.largest_losers:
        assert f"<td class=\"t\">{loser.practice_id}</td>" in page
    assert "65 and over" in page


def test_charts_name_lines_by_label(impact):
    page = render_html(impact)
    labels = texts(figure(page, "chart-waterfall"))
    assert "Capitation" in labels and "Diabetes bonus" in labels and "old total" in labels
    assert "capitation" not in labels and "bonus" not in labels  # ids are not chart labels


def test_escaping(impact):
    hostile = "<b>x</b> & \"y\""
    page = render_html(impact.model_copy(update={
        "new": impact.new.model_copy(update={"contract": hostile}),
        "lines": [ln.model_copy(update={"label": f"<img src=x onerror=alert(1)> {ln.label}"}) for ln in impact.lines],
        "warnings": ["<script>alert(2)</script>"]}), Context(names={"P2": "<script>alert(3)</script>"}))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp;" in page
    assert "<img" not in page and "alert(2)</script>" not in page and "<script>alert(3)" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    # chart text (SVG) is escaped too
    assert "&lt;img src=x onerror=alert(1)&gt;" in figure(page, "chart-waterfall")
    assert page.lower().count("<script") == 1


def test_written_atomically(impact, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("previous")
    import capdsl.tools.report as report

    def boom(_impact, _context=None):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_report(impact, target)
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]
    monkeypatch.undo()
    write_report(impact, target)
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_page_without_drivers(impact):
    page = render_html(impact.model_copy(update={"drivers": None}))
    assert page.count("<svg") >= 3 and "--no-drivers" in page


# ─────────────────────────────── provenance ─────────────────────────────────

def test_provenance_names_files_hashes_version_and_time(impact, panel, tmp_path):
    old = tmp_path / "old.cap"
    old.write_text(BASE, encoding="utf-8")
    named = impact.model_copy(update={"old": impact.old.model_copy(update={"path": str(old)})})
    run = Run(files=panel, period="2011-03", engine="python")
    context = context_for(named, run, command="capdsl diff old.cap new.cap --period 2011-03")
    assert context.names == {k: v for k, v in NAMES.items()}  # read from the practices file's `name`
    page = render_html(named, context)
    prov = page[page.index('id="provenance"'):]
    prov = prov[:prov.index("</section>")]
    assert hashlib.sha256(BASE.encode()).hexdigest() in prov
    for table, path in panel.items():
        assert html_unescape(path) in html_unescape(prov) and table in prov
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() in prov
    assert "new contract" in prov and "not hashed" in prov  # new.cap was compiled from text: no file
    assert f"<dd>{__version__}</dd>" in prov
    assert re.search(r"run at \(UTC\)</dt><dd>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</dd>", prov)
    assert "capdsl diff old.cap new.cap --period 2011-03" in prov


# ─────────────────────────────── the histogram ──────────────────────────────

def test_histogram_bins_span_the_data_not_zero_or_five_percent(ffs):
    result, _ = ffs
    values = [p.delta_pct for p in result.practices]
    assert all(v < -80 for v in values)  # capitation → capped FFS: every practice loses ~90 %
    hist = histogram_bins(values)
    lo, hi = hist.bins[0][0], hist.bins[-1][0] + hist.step
    assert lo <= min(values) and max(values) < hi and hi - lo <= 10  # the bins frame the data
    assert sum(c for _, c in hist.bins) == len(values) and hist.below == hist.above == 0
    svg = render_html(result)
    labels = texts(figure(svg, "chart-histogram"))
    ticks = [t for t in labels if re.fullmatch(r"[−-]?\d+(\.\d+)?", t)]
    numbers = [float(t.replace("−", "-")) for t in ticks]
    x_ticks, counts = [n for n in numbers if n < 0], [n for n in numbers if n >= 0]  # every delta is negative
    assert x_ticks and all(float(lo) <= n <= float(hi) for n in x_ticks)  # the x axis is about −90 %, not ±5 %
    assert counts and all(n == int(n) for n in counts) and max(counts) == 2  # whole practices, 0 to 2


def test_histogram_keeps_outliers_from_flattening_the_rest():
    values = [Decimal(v) for v in ("-4.2", "-3.1", "-2", "-1.5", "-0.5", "0", "0.7", "1.2", "2.5", "3.3")]
    values += [Decimal("5400"), Decimal("-950")]
    hist = histogram_bins(values)
    assert hist.above == 1 and hist.below == 1
    # the bulk (−4.2 … 3.3) gets real bins; the two outliers one edge bar each
    assert len(hist.bins) >= 4 and hist.bins[0][0] >= -10 and hist.bins[-1][0] + hist.step <= 10
    assert sum(c for _, c in hist.bins) + hist.above + hist.below == len(values)
    bars = histogram_chart(impact=None, hist=hist).to_dict()["layer"][0]
    assert bars["encoding"]["y"]["axis"]["format"] == "d" and bars["encoding"]["y"]["axis"]["tickMinStep"] == 1
    kinds = [r["kind"] for r in bars["data"]["values"]]
    assert kinds[0] == kinds[-1] == "beyond" and set(kinds[1:-1]) == {"practices"}


def test_histogram_of_one_value_and_of_none():
    one = histogram_bins([Decimal("743.00")] * 3)
    assert len(one.bins) == 1 and one.bins[0][1] == 3 and one.bins[0][0] <= 743 < one.bins[0][0] + one.step
    assert histogram_bins([]).bins == []


def test_large_gains_read_too(tmp_path):
    """FFS benchmark → capitation offer (docs/validation.md): +700 % and more."""
    ex = ROOT / "examples"
    run = Run(files={t: str(ex / f"{t}.csv") for t in ("members", "practices", "events", "measures")},
              period="2011-03", engine="duckdb")
    old, new = (str(ROOT / "contracts" / c) for c in ("ffs_fee_schedule.cap", "cz_vzp_2011_adult.cap"))
    result = diff(compiled_file(old).tree, compiled_file(new).tree, run, drivers=False)
    values = [p.delta_pct for p in result.practices if p.delta_pct is not None]
    hist = histogram_bins(values)
    assert hist.bins[0][0] <= min(values) and max(values) < hist.bins[-1][0] + hist.step
    assert hist.bins[0][0] > 100  # the axis starts near the data, not at 0
    page = render_html(result)
    assert "in bins of" in page


# ─────────────────────────────── the browser ────────────────────────────────

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium over --remote-debugging-pipe (DevTools protocol, NUL-separated JSON on
    fds 3 and 4): device emulation for a phone's viewport, script evaluation, screenshots."""

    def __init__(self, binary: str):
        self.profile = tempfile.TemporaryDirectory()
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()

        def onto_3_and_4():  # in the child: the pipe ends become fds 3 (commands) and 4 (replies)
            import fcntl

            read, write = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 10)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={self.profile.name}", "about:blank"],
            close_fds=False, preexec_fn=onto_3_and_4, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={**os.environ, "LANG": "C.UTF-8"})
        os.close(to_chrome)
        os.close(from_chrome)
        self._n, self._buf, self.events = 0, b"", []

    def _message(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited ({self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, **params):
        self._n += 1
        msg = {"id": self._n, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._message())

    def open(self, url: str, width: int, height: int, *, mobile: bool = False, scale: float = 1,
             script: bool = True) -> str:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session)
        self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                  deviceScaleFactor=scale, mobile=mobile)
        if not script:
            self.send("Emulation.setScriptExecutionDisabled", session, value=True)
        self.send("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session)
        return session

    def js(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path) -> bytes:
        shot = self.send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data

    def problems(self, session: str) -> list[str]:
        """Console messages, uncaught exceptions and CSP refusals the page caused."""
        out = []
        for ev in self.events:
            if ev.get("sessionId") != session:
                continue
            if ev["method"] in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled"):
                out.append(json.dumps(ev["params"])[:300])
            elif ev["method"] == "Log.entryAdded" and ev["params"]["entry"]["level"] in ("error", "warning"):
                out.append(ev["params"]["entry"]["text"])
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self.profile.cleanup()


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


# what a layout check measures: the page's width against the viewport, and any element outside a
# scrolling table box that reaches past the right edge
MEASURE = """(() => {
  const w = innerWidth, over = [];
  for (const e of document.querySelectorAll("body *")) {
    if (e.parentElement && e.parentElement.closest(".scroll")) continue;
    if (e.closest("svg") && e.tagName.toLowerCase() !== "svg") continue;
    const r = e.getBoundingClientRect();
    if (r.width && r.right > w + 0.5) over.push(e.tagName + "#" + e.id + "." + e.className + " " + r.right);
  }
  const t = document.getElementById("practice-table");
  return {width: w, page: document.documentElement.scrollWidth, over: over.slice(0, 8),
          rows: t.tBodies[0].rows.length, buttons: t.querySelectorAll("button.sort").length,
          finder: !document.querySelector(".find").hidden,
          svgs: [...document.querySelectorAll("figure svg")].map(s => s.getBoundingClientRect().width)};
})()"""

SEARCH = """((q) => {
  const box = document.querySelector('input[data-filter="practice-table"]');
  box.value = q; box.dispatchEvent(new Event("input"));
  const rows = [...document.getElementById("practice-table").tBodies[0].rows];
  return {shown: rows.filter(r => !r.hidden).map(r => r.cells[0].textContent.trim()),
          count: document.getElementById("practice-table-count").textContent};
})"""

SORT = """((col) => {
  const t = document.getElementById("practice-table");
  t.tHead.rows[0].cells[col].querySelector("button").click();
  return {order: [...t.tBodies[0].rows].map(r => r.cells[col].getAttribute("data-v")),
          sort: t.tHead.rows[0].cells[col].getAttribute("aria-sort")};
})"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def page(impact, panel, tmp_path_factory):
    run = Run(files=panel, period="2011-03", engine="python")
    path = write_report(impact, tmp_path_factory.mktemp("browser") / "impact.html", context_for(impact, run))
    return path.resolve().as_uri(), path


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                             "`make system-deps` does it)")
class TestInTheBrowser:

    def test_desktop(self, browser, page, impact, tmp_path):
        url, _ = page
        session = browser.open(url, 1280, 900)
        m = browser.js(session, MEASURE)
        assert m["page"] <= m["width"] and not m["over"], m
        assert m["rows"] == len(impact.practices) and m["buttons"] >= 5 and m["finder"], m  # the script ran
        assert len(m["svgs"]) == 3 and all(w > 250 for w in m["svgs"]), m
        for fig in ("chart-histogram", "chart-waterfall", "chart-age"):  # the charts' SVG trees were built
            assert browser.js(session, f"document.querySelectorAll('#{fig} svg rect, #{fig} svg path').length") > 3
        data = browser.screenshot(session, tmp_path / "desktop.png")
        assert png_size(data)[0] == 1280 and len(data) > 40_000  # a blank page compresses to a few KB
        assert browser.problems(session) == []  # no error, no refused script (the CSP hash matches)

    def test_phone_width(self, browser, page, impact, tmp_path):
        url, _ = page
        session = browser.open(url, 390, 844, mobile=True, scale=2)
        m = browser.js(session, MEASURE)
        assert m["width"] == 390 and m["page"] <= 390 and not m["over"], m  # no sideways scrolling of the page
        assert all(w <= 390 - 2 * 12 for w in m["svgs"]), m  # the charts shrink to the column
        # a wide table scrolls inside its box instead
        inner = browser.js(session, "(() => { const s = document.getElementById('practice-table').parentElement;"
                                    " return [s.clientWidth, s.scrollWidth]; })()")
        assert inner[0] <= 390 and inner[1] > inner[0]
        data = browser.screenshot(session, tmp_path / "phone.png")
        assert png_size(data)[0] == 390 * 2 and len(data) > 40_000
        assert browser.problems(session) == []

    def test_search_and_sort(self, browser, page, impact):
        url, _ = page
        session = browser.open(url, 1280, 900)
        found = browser.js(session, SEARCH + '("P1")')
        assert len(found["shown"]) == 1 and "P1" in found["shown"][0] and found["count"] == "1 of 6 shown"
        found = browser.js(session, SEARCH + '("nováková")')  # by name, any case
        assert len(found["shown"]) == 1 and "MUDr. Nováková" in found["shown"][0]
        assert browser.js(session, SEARCH + '("no such practice")')["shown"] == []
        found = browser.js(session, SEARCH + '("")')
        assert len(found["shown"]) == 6 and found["count"] == "6 in all"
        deltas = sorted(p.delta for p in impact.practices)
        up = browser.js(session, SORT + "(1)")
        assert [Decimal(v) for v in up["order"]] == deltas and up["sort"] == "ascending"
        down = browser.js(session, SORT + "(1)")
        assert [Decimal(v) for v in down["order"]] == deltas[::-1] and down["sort"] == "descending"
        names = browser.js(session, SORT + "(0)")
        assert names["sort"] == "ascending"
        assert browser.problems(session) == []

    def test_readable_without_javascript(self, browser, page, impact):
        url, _ = page
        session = browser.open(url, 390, 844, mobile=True, script=False)
        m = browser.js(session, MEASURE)
        assert m["rows"] == len(impact.practices) and m["buttons"] == 0 and not m["finder"], m
        assert m["page"] <= 390 and not m["over"], m
        hidden = browser.js(session, "[...document.querySelectorAll('#practice-table tbody tr')]"
                                     ".filter(r => r.hidden).length")
        assert hidden == 0
