"""The HTML impact report: self-contained, atomic, and rendering in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from capdsl.tools.impact import diff
from capdsl.pipeline import Run
from capdsl.tools.report import render_html, write_report
from validation_helpers import BASE, compile_text, variant, write_panel

NEW = variant(BASE, ("65 and over: 2.00", "65 and over: 2.40"), ("45 CZK otherwise", "40 CZK otherwise"),
              ('line services "Services" = sum of event.points * point_value over events\n',
               'line services "Services" = sum of event.points * point_value over events\n'
               'line bonus "Diabetes bonus" = sum of 10 CZK over members where member.diabetes\n'))


@pytest.fixture(scope="module")
def impact(tmp_path_factory):
    panel = write_panel(tmp_path_factory.mktemp("report"), members=90, practices=6)
    run = Run(files=panel, period="2011-03", engine="python")
    return diff(compile_text(BASE, "old.cap")[1], compile_text(NEW, "new.cap")[1], run)


def test_page_is_self_contained(impact):
    page = render_html(impact)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 3
    for fig in ("chart-histogram", "chart-waterfall", "chart-age"):
        assert f'id="{fig}"' in page
    assert "<script" not in page.lower()
    # nothing fetched from the network: no src/href to http(s); SVG namespaces are not fetches
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "@import" not in page and "url(http" not in page


def test_page_states_the_numbers(impact):
    page = render_html(impact)
    assert "Diabetes bonus" in page and "added" in page
    assert f"{impact.distribution.losing_over_5pct}</span>" in page
    for loser in impact.distribution.largest_losers:
        assert f"<td>{loser.practice_id}</td>" in page
    assert "65 and over" in page


def test_escaping(impact):
    hostile = impact.model_copy(update={"new": impact.new.model_copy(update={"contract": "<b>x</b> & \"y\""})})
    page = render_html(hostile)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp;" in page


def test_written_atomically(impact, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("previous")
    import capdsl.tools.report as report

    def boom(_impact):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_report(impact, target)
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]
    monkeypatch.undo()
    write_report(impact, target)
    assert target.read_text().startswith("<!DOCTYPE html>")


# ─────────────────────────────── browser ───────────────────────────────────

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium(*args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "LANG": "C.UTF-8"})


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                             "`make system-deps` does it)")
def test_report_renders_in_headless_chromium(impact, tmp_path):
    page = write_report(impact, tmp_path / "impact.html")
    url = page.resolve().as_uri()
    dom = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the browser parsed the page and built the three charts' SVG trees
    for fig in ("chart-histogram", "chart-waterfall", "chart-age"):
        block = html[html.index(f'id="{fig}"'):]
        block = block[:block.index("</figure>")]
        assert "<svg" in block and ("<path" in block or "<rect" in block), fig
    assert "Largest losers" in html
    # the page has no script, so any console message (an "Uncaught …" error included) is a defect
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    shot = tmp_path / "shot.png"
    result = chromium("--window-size=1200,1600", f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses to a few KB


def test_page_without_drivers(impact):
    page = render_html(impact.model_copy(update={"drivers": None}))
    assert page.count("<svg") >= 3 and "--no-drivers" in page
