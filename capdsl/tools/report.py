"""The `capdsl diff --report` page: one self-contained HTML file.

Charts are Vega-Lite specs (built with altair) rendered to static SVG at
write time by vl-convert, which bundles Vega and runs offline. The page has
no external stylesheet, font, image or script: one small inline script makes
the tables sortable and searchable, and a Content-Security-Policy allows
that script (by its hash) and nothing else, so the page fetches nothing even
if a text slipped through escaping. Without JavaScript every table is still
complete and readable. It opens anywhere (mail attachment, air-gapped
laptop) and looks the same; on a narrow screen the charts shrink to the
width and wide tables scroll inside their box.

Amounts are Decimal throughout; they become floats only inside the chart
data (`_f`) and as sort keys, where a cent of rounding is invisible. Every
number printed in the page text comes from the Decimal values.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from capdsl import __version__
from capdsl.errors import UsageError, error
from capdsl.tools.impact import EVENTS_WITHOUT_MEMBER, Impact, LineDelta, PracticeRef, nearest_rank

ZERO = Decimal(0)
#: at most this many bins between the histogram's outlier fences
MAX_BINS = 30
#: Tukey's far-out fences: a practice beyond Q1 − 3·IQR or Q3 + 3·IQR is drawn in an edge bar
FENCE = Decimal(3)
#: the dashed guides of the histogram (the ±5 % the summary counts)
GUIDES = (Decimal(-5), Decimal(5))
#: panel files up to this size are hashed for the provenance
HASH_LIMIT = 1 << 30
#: Vega lays labels out with the widths of the first of these fonts it has; naming wide fonts first
#: keeps a browser that draws with a narrower one from overrunning the chart's edge.
CHART_CONFIG = {"font": "DejaVu Sans, Verdana, Geneva, Arial, sans-serif", "padding": 8}

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2933;
background:#f5f7fa;line-height:1.4}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.5em;margin:0 0 4px;overflow-wrap:anywhere}h2{font-size:1.15em;margin:28px 0 8px;
border-bottom:1px solid #d9e2ec;padding-bottom:4px}h3{font-size:1em;margin:18px 0 6px}
.sub{color:#52606d;margin:0 0 16px;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:12px 16px;min-width:150px;max-width:100%}
.card .k{color:#52606d;font-size:.85em}.card .v{font-size:1.35em;font-weight:600;font-variant-numeric:tabular-nums;
overflow-wrap:anywhere}
.neg{color:#b42318}.pos{color:#067647}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0 12px;background:#fff}
table{border-collapse:collapse;background:#fff;width:100%;font-size:.9em}
th,td{border:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f0f4f8;font-weight:600}
td.t{min-width:12em;overflow-wrap:anywhere}
.scroll td:first-child,.scroll th:first-child{position:sticky;left:0;z-index:1;background:#fff;
box-shadow:1px 0 0 #e4e7eb}.scroll th:first-child{background:#f0f4f8}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
figure{background:#fff;border:1px solid #d9e2ec;border-radius:6px;margin:0;padding:8px;min-width:0}
figure svg{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{color:#52606d;font-size:.85em;margin-top:4px}
#chart-age{grid-column:1/-1}
.tag{display:inline-block;font-size:.75em;padding:0 6px;border-radius:8px;background:#fff3c4}
.note{color:#52606d;font-size:.85em}
.id{color:#52606d;font-size:.85em;font-family:ui-monospace,"DejaVu Sans Mono",monospace}
code,.hash{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85em;overflow-wrap:anywhere}
.find{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:6px 0}
.find input{font:inherit;padding:4px 8px;border:1px solid #9aa5b1;border-radius:4px;width:18em;max-width:100%}
button.sort{all:unset;cursor:pointer;display:inline-block}
button.sort:focus-visible{outline:2px solid #3e7cb1}
th[aria-sort=ascending] button.sort::after{content:" \\25B2";font-size:.75em}
th[aria-sort=descending] button.sort::after{content:" \\25BC";font-size:.75em}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 12px;margin:0;background:#fff;
border:1px solid #e4e7eb;padding:8px 12px}
dl.facts dt{color:#52606d}dl.facts dd{margin:0;overflow-wrap:anywhere}
@media (max-width:800px){.grid{grid-template-columns:minmax(0,1fr)}main{padding:12px}}
@media (max-width:480px){body{font-size:15px}td.t{min-width:8em;max-width:11em}
.card{min-width:0;flex:1 1 40%;padding:8px 10px}
.card .v{font-size:1.1em}dl.facts{grid-template-columns:minmax(0,1fr)}dl.facts dd{margin-bottom:6px}
h1{font-size:1.25em}}
@media print{.find{display:none}.scroll{overflow:visible}}
"""

# Sorting (click a column head) and searching (the box above a table). Keys are the cells'
# data-v (exact decimal strings, compared as numbers) or their text; an empty key sorts last.
SCRIPT = """(function(){
function key(c){var v=c.getAttribute("data-v");if(v===null)return c.textContent.trim().toLowerCase();
return v===""?null:parseFloat(v);}
function cmp(a,b){if(a===null)return b===null?0:1;if(b===null)return -1;return a<b?-1:a>b?1:0;}
var tables=document.querySelectorAll("table.data");
for(var t=0;t<tables.length;t++){(function(table){
var heads=table.tHead.rows[0].cells,body=table.tBodies[0];
for(var i=0;i<heads.length;i++){(function(th,i){
var b=document.createElement("button");b.type="button";b.className="sort";b.title="sort by this column";
while(th.firstChild)b.appendChild(th.firstChild);th.appendChild(b);
b.addEventListener("click",function(){var up=th.getAttribute("aria-sort")!=="ascending";
for(var j=0;j<heads.length;j++)heads[j].removeAttribute("aria-sort");
th.setAttribute("aria-sort",up?"ascending":"descending");
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(x,y){var r=cmp(key(x.cells[i]),key(y.cells[i]));if(!up&&key(x.cells[i])!==null&&
key(y.cells[i])!==null)r=-r;return r;});
for(var k=0;k<rows.length;k++)body.appendChild(rows[k]);});})(heads[i],i);}
})(tables[t]);}
var boxes=document.querySelectorAll("input[data-filter]");
for(var f=0;f<boxes.length;f++){(function(box){
var table=document.getElementById(box.getAttribute("data-filter")),shown=document.getElementById(
box.getAttribute("data-count")),rows=table.tBodies[0].rows,total=rows.length;
box.closest(".find").hidden=false;
box.addEventListener("input",function(){var q=box.value.trim().toLowerCase(),n=0;
for(var r=0;r<rows.length;r++){var hit=!q||(rows[r].getAttribute("data-s")||"").indexOf(q)>=0;
rows[r].hidden=!hit;if(hit)n++;}
shown.textContent=q?n+" of "+total+" shown":total+" in all";});})(boxes[f]);}
})();"""

SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{SCRIPT_HASH}'; "
       "base-uri 'none'; form-action 'none'")


def _f(value: Decimal | None) -> float | None:
    """Chart data only: Vega-Lite needs floats (never used for printed amounts)."""
    return None if value is None else float(value)


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def money(value: Decimal, currency: str = "") -> str:
    text = f"{value:,.2f}".replace(",", "\u202f")
    return _e(f"{text} {currency}".strip())


def signed(value: Decimal | None, suffix: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:+,.2f}".replace(",", "\u202f") + suffix
    cls = "neg" if value < 0 else ("pos" if value > 0 else "")
    return f'<span class="{cls}">{_e(text)}</span>'


# ─────────────────────────────── what the page names ─────────────────────────

@dataclass(frozen=True, slots=True)
class FileFact:
    """A file the diff read, as the provenance names it."""

    role: str  # old contract, new contract, members, practices, events, measures, parameters
    path: str
    sha256: str | None  # None: not hashed (too large, unreadable)
    size: int | None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the report's numbers come from: the files with their SHA-256, the command, capdsl's
    version and the time of the run (UTC)."""

    files: tuple[FileFact, ...] = ()
    command: str | None = None
    version: str = __version__
    run_at: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    """What the page states besides the `Impact`: practice names and provenance."""

    names: dict[str, str] = field(default_factory=dict)
    provenance: Provenance | None = None


def file_fact(role: str, path: str | Path) -> FileFact:
    """A file's SHA-256 and size (a `book.xlsx#Sheet` names its workbook); None when it cannot be
    read or is beyond HASH_LIMIT."""
    from capdsl.data.read import split_sheet

    real, _sheet = split_sheet(path)
    try:
        size = real.stat().st_size
        if size > HASH_LIMIT:
            return FileFact(role, str(path), None, size)
        digest = hashlib.sha256()
        with open(real, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return FileFact(role, str(path), digest.hexdigest(), size)
    except OSError:
        return FileFact(role, str(path), None, None)


def context_for(impact: Impact, run, new_run=None, *, command: str | None = None) -> Context:
    """The names and provenance of a diff of `run` (and `new_run`, the new side's settings)."""
    from capdsl.tools.statement_doc import practice_names, run_time

    files = [file_fact("old contract", impact.old.path), file_fact("new contract", impact.new.path)]
    files += [file_fact(table, path) for table, path in run.files.items() if path]
    for side, r in (("old", run), ("new", new_run)):
        if r is not None and r.params_file and (side == "old" or r.params_file != run.params_file):
            files.append(file_fact(f"parameters ({side})" if new_run is not None else "parameters", r.params_file))
    return Context(names=practice_names(run),
                   provenance=Provenance(files=tuple(files), command=command, run_at=run_time()))


# ─────────────────────────────── charts ─────────────────────────────────────

def _svg(chart) -> str:
    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart.to_dict(), config=CHART_CONFIG, allowed_base_urls=[])
    return svg[svg.index("<svg"):] if "<svg" in svg else svg


def _money_axis(values: list[Decimal], title: str):
    """An axis of amounts: 1.2M / 350k for large ones (0 as 0, not 0M), plain numbers for small."""
    import altair as alt

    top = max((abs(v) for v in values), default=ZERO)
    return alt.Axis(format="~s" if top >= 10_000 else ",~f", labelExpr="datum.value == 0 ? '0' : datum.label",
                    labelOverlap="greedy", tickCount=6, title=title, titlePadding=8)


def _step(span: Decimal, bins: int) -> Decimal:
    """A round bin width (1, 2, 2.5 or 5 × 10^k, at least 0.01) giving at most `bins` bins over `span`."""
    if span <= 0:
        return Decimal(1)
    k = int((span / bins).log10().to_integral_value(rounding=ROUND_FLOOR))
    for exp in (k - 1, k, k + 1, k + 2):
        for m in ("1", "2", "2.5", "5"):
            step = Decimal(m).scaleb(exp)
            if step >= Decimal("0.01") and span / step <= bins:
                return step
    return Decimal(10) ** (k + 2)  # pragma: no cover - the loop always finds one


@dataclass(frozen=True, slots=True)
class Histogram:
    """Practice delta % in bins of a round width between the outlier fences, and the practices
    beyond the fences counted apart (drawn as one bar at each edge)."""

    step: Decimal
    bins: list[tuple[Decimal, int]]  # (lower edge, practices), contiguous, each `step` wide
    below: int = 0  # practices below bins[0]'s lower edge
    above: int = 0  # practices at or above the last bin's upper edge
    low_fence: Decimal | None = None
    high_fence: Decimal | None = None


def histogram_bins(values: list[Decimal]) -> Histogram:
    """Bin the practice deltas (%). The range is the data's (not ±5 % nor 0, so −90 % ± 2 reads as
    such); with 8 or more practices, Tukey's far-out fences keep a few extreme practices (a contract
    that pays 50 times as much to one practice) from squeezing everyone else into one bar."""
    if not values:
        return Histogram(Decimal(1), [])
    data = sorted(values)
    lo, hi = data[0], data[-1]
    low_fence = high_fence = None
    if len(data) >= 8:
        q1, q3 = nearest_rank(data, 25), nearest_rank(data, 75)
        iqr = q3 - q1
        if iqr > 0:
            f_lo, f_hi = q1 - FENCE * iqr, q3 + FENCE * iqr
            if lo < f_lo:
                lo, low_fence = min(v for v in data if v >= f_lo), f_lo
            if hi > f_hi:
                hi, high_fence = max(v for v in data if v <= f_hi), f_hi
    # about 2·√n bins (5 for a handful of practices), never more than MAX_BINS
    step = _step(hi - lo, min(MAX_BINS, max(5, math.ceil(2 * math.sqrt(len(data))))))
    start = (lo / step).to_integral_value(rounding=ROUND_FLOOR) * step
    n = int(((hi - start) / step).to_integral_value(rounding=ROUND_FLOOR)) + 1
    counts = [0] * n
    below = above = 0
    for v in data:
        i = int(((v - start) / step).to_integral_value(rounding=ROUND_FLOOR))
        if v < lo:
            below += 1
        elif v > hi:
            above += 1
        else:
            counts[min(i, n - 1)] += 1
    return Histogram(step, [(start + i * step, c) for i, c in enumerate(counts)], below, above, low_fence,
                     high_fence)


def _pct_format(step: Decimal) -> str:
    places = max(0, -step.normalize().as_tuple().exponent)
    return f",.{min(places, 2)}f"


def histogram_chart(impact: Impact, hist: Histogram | None = None):
    import altair as alt

    hist = hist or histogram_bins([p.delta_pct for p in impact.practices if p.delta_pct is not None])
    step = hist.step
    rows = [{"from": _f(lo), "to": _f(lo + step), "practices": c, "kind": "practices"} for lo, c in hist.bins]
    if not rows:
        rows = [{"from": -0.5, "to": 0.5, "practices": 0, "kind": "practices"}]
    first, last = Decimal(str(rows[0]["from"])), Decimal(str(rows[-1]["to"]))
    if hist.below:
        rows.insert(0, {"from": _f(first - step), "to": _f(first), "practices": hist.below, "kind": "beyond"})
    if hist.above:
        rows.append({"from": _f(last), "to": _f(last + step), "practices": hist.above, "kind": "beyond"})
    domain = [rows[0]["from"], rows[-1]["to"]]
    edges = [r["from"] for r in rows] + [rows[-1]["to"]]
    ticks = edges[::math.ceil(len(edges) / 9)]  # bin edges, at most 9 of them labelled
    top = max(r["practices"] for r in rows)
    bars = alt.Chart(alt.Data(values=rows)).mark_bar(stroke="#fff", strokeWidth=0.5).encode(
        x=alt.X("from:Q", title="change in total payment per practice (%)",
                scale=alt.Scale(domain=domain, nice=False, zero=False),
                axis=alt.Axis(format=_pct_format(step), values=ticks, labelOverlap="greedy", labelFlush=True,
                              titlePadding=8)),
        x2="to:Q",
        y=alt.Y("practices:Q", title="practices",
                scale=alt.Scale(domain=[0, max(top, 1)], nice=True),
                axis=alt.Axis(format="d", tickMinStep=1, tickCount=min(max(top, 1), 8), titlePadding=8)),
        y2=alt.datum(0),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["practices", "beyond"], range=["#3e7cb1", "#9aa5b1"]),
                        legend=None))
    layers = [bars]
    guides = [{"x": _f(g)} for g in GUIDES if domain[0] <= float(g) <= domain[1]]
    if guides:
        layers.append(alt.Chart(alt.Data(values=guides)).mark_rule(color="#b42318", strokeDash=[4, 3]).encode(
            x="x:Q"))
    return alt.layer(*layers).properties(width=380, height=220, title="Distribution of practice deltas")


def _unique_labels(labels: list[str]) -> list[str]:
    """Chart categories must differ: a label used twice gets its position appended."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def waterfall_chart(impact: Impact):
    """Old total, one step per line (by label; lines paying 0 on both sides left out), new total —
    drawn horizontally so long labels stay readable."""
    import altair as alt

    shown = [ln for ln in impact.lines if ln.old or ln.new]
    cumulative, running = [impact.old_total], impact.old_total
    for ln in shown:
        running += ln.delta
        cumulative.append(running)
    low, high = min(cumulative), max(cumulative)
    # Totals start at a floor below the lowest step, so small line deltas stay visible
    # next to large totals; the axis title says the axis does not start at 0.
    floor = max(ZERO, low - (high - low)) if high != low else ZERO
    labels = _unique_labels(["old total", *(ln.label for ln in shown), "new total"])
    rows, running = [], impact.old_total
    rows.append({"step": labels[0], "start": _f(floor), "end": _f(running), "kind": "total"})
    for i, ln in enumerate(shown, start=1):
        nxt = running + ln.delta
        rows.append({"step": labels[i], "start": _f(running), "end": _f(nxt),
                     "kind": "increase" if ln.delta >= 0 else "decrease"})
        running = nxt
    rows.append({"step": labels[-1], "start": _f(floor), "end": _f(impact.new_total), "kind": "total"})
    return alt.Chart(alt.Data(values=rows)).mark_bar(height={"band": 0.7}).encode(
        y=alt.Y("step:N", sort=labels, title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("start:Q", scale=alt.Scale(zero=floor == 0),
                axis=_money_axis(cumulative, f"amount ({impact.currency})" + (", axis not from 0" if floor else ""))),
        x2="end:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["total", "increase", "decrease"],
                                                  range=["#52606d", "#067647", "#b42318"]), legend=None),
    ).properties(width=260, height=max(120, 24 * len(rows)), title="Old → new, line by line")


def age_chart(impact: Impact):
    import altair as alt

    groups = [g for g in (impact.drivers.groups if impact.drivers else []) if g.dimension == "age band"]
    data = [{"band": g.group, "delta": _f(g.delta), "sign": "gain" if g.delta >= 0 else "loss"} for g in groups]
    order = [g.group for g in groups]
    if not data:
        data, order = [{"band": "(no member groups)", "delta": 0.0, "sign": "gain"}], ["(no member groups)"]
    return alt.Chart(alt.Data(values=data)).mark_bar(height={"band": 0.75}).encode(
        y=alt.Y("band:N", sort=order, title="age band", axis=alt.Axis(labelLimit=190, titlePadding=8)),
        x=alt.X("delta:Q", axis=_money_axis([g.delta for g in groups], f"delta ({impact.currency})")),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["gain", "loss"], range=["#067647", "#b42318"]),
                        legend=None),
    ).properties(width=300, height=max(120, 18 * len(data)), title="Delta by age band")


# ─────────────────────────────── tables ─────────────────────────────────────

def _num(value: Decimal | None, text: str) -> str:
    """A numeric cell: its exact value as the sort key, the formatted text shown."""
    return f'<td class="n" data-v="{"" if value is None else _e(value)}">{text}</td>'


def _finder(table_id: str, what: str, total: int) -> str:
    """The search box above a table: hidden until the script shows it (nothing to do without it)."""
    return (f'<div class="find" hidden><label>Search {_e(what)} <input type="search" data-filter="{table_id}" '
            f'data-count="{table_id}-count" autocomplete="off"></label> <span id="{table_id}-count" '
            f'class="note" aria-live="polite">{total} in all</span></div>')


def _tag(status: str) -> str:
    return "" if status == "both" else f' <span class="tag">{_e(status)}</span>'


def _practice_cell(pid: str, names: dict[str, str], status: str = "both") -> str:
    name = names.get(pid)
    if name:
        return f'<td class="t">{_e(name)} <span class="id">{_e(pid)}</span>{_tag(status)}</td>'
    return f'<td class="t">{_e(pid)}{_tag(status)}</td>'


# Delta first: on a narrow screen the columns that matter are the ones in view.
AMOUNT_HEADS = '<th class="n">delta</th><th class="n">delta %</th><th class="n">old</th><th class="n">new</th>'


def _amount_cells(old: Decimal, new: Decimal, delta: Decimal, delta_pct: Decimal | None) -> str:
    return (f'{_num(delta, signed(delta))}{_num(delta_pct, signed(delta_pct, " %"))}'
            f'{_num(old, money(old))}{_num(new, money(new))}')


def _line_table(lines: list[LineDelta]) -> str:
    out = [_finder("line-table", "lines", len(lines)),
           f'<div class="scroll"><table class="data" id="line-table"><thead><tr><th>line</th>{AMOUNT_HEADS}</tr>'
           '</thead><tbody>']
    for ln in lines:
        out.append(f'<tr data-s="{_e(f"{ln.label} {ln.id} {ln.status}".lower())}"><td class="t">{_e(ln.label)} '
                   f'<span class="id">{_e(ln.id)}</span>{_tag(ln.status)}</td>'
                   f'{_amount_cells(ln.old, ln.new, ln.delta, ln.delta_pct)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def _practices_table(impact: Impact, names: dict[str, str]) -> str:
    """Every practice: delta, delta %, totals and each line's delta (lines paying 0 on both sides in
    every practice are left out). Sorted by delta, the largest loss first."""
    lines = [ln for ln in impact.lines if ln.old or ln.new]
    head = [f'<thead><tr><th>practice</th>{AMOUNT_HEADS}']
    head += [f'<th class="n" title="{_e(ln.id)}">Δ {_e(ln.label)}</th>' for ln in lines]
    head.append("</tr></thead>")
    rows = []
    for p in sorted(impact.practices, key=lambda p: (p.delta, p.practice_id)):
        by = {ln.id: ln for ln in p.lines}
        search = f"{names.get(p.practice_id, '')} {p.practice_id} {p.status}".lower()
        cells = "".join(_num(by[ln.id].delta, signed(by[ln.id].delta)) if ln.id in by else _num(None, "—")
                        for ln in lines)
        rows.append(f'<tr data-s="{_e(search.strip())}">{_practice_cell(p.practice_id, names, p.status)}'
                    f'{_amount_cells(p.old, p.new, p.delta, p.delta_pct)}{cells}</tr>')
    return (_finder("practice-table", "practices (name or id)", len(impact.practices)) +
            '<div class="scroll"><table class="data" id="practice-table">' + "".join(head) + "<tbody>" +
            "".join(rows) + "</tbody></table></div>")


def _refs_table(refs: list[PracticeRef], empty: str, names: dict[str, str]) -> str:
    if not refs:
        return f'<p class="note">{_e(empty)}</p>'
    out = [f'<div class="scroll"><table><thead><tr><th>practice</th>{AMOUNT_HEADS}</tr></thead><tbody>']
    for r in refs:
        out.append(f'<tr>{_practice_cell(r.practice_id, names)}{_amount_cells(r.old, r.new, r.delta, r.delta_pct)}'
                   '</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def _drivers_html(impact: Impact) -> str:
    d = impact.drivers
    if d is None:
        return '<h2>Drivers</h2><p class="note">Drivers were not computed (--no-drivers).</p>'
    label_of = {ln.id: ln.label for ln in impact.lines}
    parts = ['<h2>Drivers</h2><h3>By line</h3><div class="scroll"><table><thead><tr><th>line</th>'
             '<th class="n">delta</th><th class="n">share of the change</th></tr></thead><tbody>']
    for ln in d.lines:
        parts.append(f'<tr><td class="t">{_e(ln.label)} <span class="id">{_e(ln.id)}</span></td>'
                     f'<td class="n">{signed(ln.delta)}</td><td class="n">{signed(ln.share_pct, " %")}</td></tr>')
    parts.append("</tbody></table></div>")
    bands = [g for g in d.groups if g.dimension == "age band"]
    if bands:
        parts.append('<h3>By age band</h3><div class="scroll"><table><thead><tr><th>age band</th>'
                     '<th class="n">member-months</th><th class="n">old</th><th class="n">new</th>'
                     '<th class="n">delta</th></tr></thead><tbody>')
        for g in bands:
            parts.append(f'<tr><td>{_e(g.group)}</td><td class="n">{money(g.member_months)}</td>'
                         f'<td class="n">{money(g.old)}</td><td class="n">{money(g.new)}</td>'
                         f'<td class="n">{signed(g.delta)}</td></tr>')
        parts.append("</tbody></table></div>")
    flags = [g for g in d.groups if g.dimension not in ("age band", "age band × flags")]
    if flags:
        parts.append('<h3>By member flag</h3><div class="scroll"><table><thead><tr><th>flag</th><th>group</th>'
                     '<th class="n">member-months</th><th class="n">old</th><th class="n">new</th>'
                     '<th class="n">delta</th></tr></thead><tbody>')
        for g in flags:
            parts.append(f'<tr><td>{_e(g.dimension)}</td><td>{_e(g.group)}</td><td class="n">{money(g.member_months)}'
                         f'</td><td class="n">{money(g.old)}</td><td class="n">{money(g.new)}</td>'
                         f'<td class="n">{signed(g.delta)}</td></tr>')
        parts.append("</tbody></table></div>")
    if d.tiers:
        parts.append('<h3>Tiers and practice tables (entry matched, old → new)</h3><div class="scroll"><table>'
                     '<thead><tr><th>table</th><th>old entry</th><th>new entry</th><th class="n">practices</th>'
                     '<th class="n">delta</th></tr></thead><tbody>')
        for s in d.tiers:
            parts.append(f'<tr><td>{_e(s.table)}</td><td class="t">{_e(s.old_entry)}</td>'
                         f'<td class="t">{_e(s.new_entry)}</td><td class="n">{s.practices:d}</td>'
                         f'<td class="n">{signed(s.delta)}</td></tr>')
        parts.append("</tbody></table></div>")
    if d.unattributed:
        parts.append('<h3>Not attributable to member groups</h3><div class="scroll"><table><thead><tr>'
                     '<th>line</th><th class="n">delta</th><th>why</th></tr></thead><tbody>')
        for u in d.unattributed:
            parts.append(f'<tr><td class="t">{_e(label_of.get(u.line, u.line))} <span class="id">{_e(u.line)}'
                         f'</span></td><td class="n">{signed(u.delta)}</td><td class="t">{_e(u.reason)}</td></tr>')
        parts.append("</tbody></table></div>")
    parts.append(f'<p class="note">Member groups: each line re-evaluated on each group\'s members alone '
                 f'(exact for lines additive over members; the rest is listed above). Events whose member is '
                 f'unknown are the group “{_e(EVENTS_WITHOUT_MEMBER)}”.</p>')
    return "".join(parts)


def _size(n: int | None) -> str:
    if n is None:
        return "unreadable"
    return f"{n:,} bytes".replace(",", "\u202f")


def _provenance_html(impact: Impact, prov: Provenance | None) -> str:
    from capdsl.tools.statement_doc import run_time

    prov = prov or Provenance(files=(file_fact("old contract", impact.old.path),
                                     file_fact("new contract", impact.new.path)), run_at=run_time())
    rows = []
    for f in prov.files:
        digest = (f'SHA-256 <span class="hash">{_e(f.sha256)}</span>' if f.sha256 else
                  '<span class="note">not hashed</span>')
        rows.append(f"<dt>{_e(f.role)}</dt><dd><code>{_e(f.path)}</code> · {_size(f.size)} · {digest}</dd>")
    for side, s in (("old", impact.old), ("new", impact.new)):
        rows.append(f"<dt>{side} side</dt><dd>{_e(s.contract)} · {_e(s.period)} · {_e(s.currency)}"
                    + (f" · {_e(', '.join(s.settings))}" if s.settings else "") + "</dd>")
    rows.append(f"<dt>engine</dt><dd>{_e(impact.engine)}</dd>")
    if prov.command:
        rows.append(f"<dt>command</dt><dd><code>{_e(prov.command)}</code></dd>")
    rows.append(f"<dt>capdsl</dt><dd>{_e(prov.version)}</dd><dt>run at (UTC)</dt><dd>{_e(prov.run_at)}</dd>")
    return '<section id="provenance"><h2>Provenance</h2><dl class="facts">' + "".join(rows) + "</dl></section>"


def _histogram_caption(impact: Impact, hist: Histogram) -> str:
    words = [f"Practices by change in total payment, in bins of {hist.step.normalize():f} %"]
    if any(GUIDES[0] <= lo + hist.step and lo <= GUIDES[1] for lo, _ in hist.bins):
        words.append("dashed lines at ±5 %")
    if hist.below:
        words.append(f"{hist.below} below {hist.bins[0][0].normalize():f} % in the grey bar on the left")
    if hist.above:
        words.append(f"{hist.above} at or above {(hist.bins[-1][0] + hist.step).normalize():f} % in the grey bar "
                     "on the right")
    missing = impact.distribution.without_old_amount
    if missing:
        words.append(f"{missing} practices without an old amount (delta % undefined) are not counted")
    return "; ".join(words) + "."


# ─────────────────────────────── the page ───────────────────────────────────

def render_html(impact: Impact, context: Context | None = None) -> str:
    """The whole report as one HTML string (charts as inline SVG)."""
    context = context or Context()
    names = context.names
    cur = impact.currency
    dist = impact.distribution
    same_file = impact.old.path == impact.new.path
    old_name = f"{impact.old.contract} — {impact.old.period}" + (
        f" ({', '.join(impact.old.settings)})" if impact.old.settings else "")
    new_name = f"{impact.new.contract} — {impact.new.period}" + (
        f" ({', '.join(impact.new.settings)})" if impact.new.settings else "")
    rate = (f'<p class="note">Old amounts converted from {_e(impact.old.currency)} at {_e(impact.rate)} '
            f'{_e(cur)} per {_e(impact.old.currency)}.</p>') if impact.rate is not None else ""
    quant = " · ".join(f"p{q.q}: {q.delta_pct:+.2f} %" for q in dist.quantiles)
    cards = [("old total", money(impact.old_total, cur)), ("new total", money(impact.new_total, cur)),
             ("delta", signed(impact.delta, f" {cur}")), ("delta %", signed(impact.delta_pct, " %")),
             ("practices", f"{dist.practices:d}"),
             ("losing more than 5 %", f'<span class="neg">{dist.losing_over_5pct:d}</span>'),
             ("gaining more than 5 %", f'<span class="pos">{dist.gaining_over_5pct:d}</span>'),
             ("within ±5 %", f"{dist.within_5pct:d}")]
    card_html = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>'
                        for k, v in cards)
    warnings = "".join(f"<li>{_e(w)}</li>" for w in impact.warnings)
    if warnings:
        warnings = (f'<details class="note"><summary>{len(impact.warnings)} warnings from loading the panel'
                    f'</summary><ul>{warnings}</ul></details>')
    hist = histogram_bins([p.delta_pct for p in impact.practices if p.delta_pct is not None])
    zero_lines = [ln.label for ln in impact.lines if not ln.old and not ln.new]
    zero_note = (f" Lines paying 0 on both sides are left out: {_e(', '.join(zero_lines))}."
                 if zero_lines else "")
    title = f"{impact.old.contract} → {impact.new.contract}" if not same_file else impact.new.contract
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="capdsl {_e(__version__)}">
<title>capdsl diff — {_e(title)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Contract impact: {_e(title)}</h1>
<p class="sub">old: {_e(old_name)} <span class="id">{_e(impact.old.path)}</span><br>
new: {_e(new_name)} <span class="id">{_e(impact.new.path)}</span><br>
engine {_e(impact.engine)} · amounts in {_e(cur)}</p>
{rate}
<section id="summary"><h2>Summary</h2><div class="cards">{card_html}</div>
<p class="note">Delta % quantiles over practices: {_e(quant) or "—"}
{f"· {dist.without_old_amount:d} practices had no old amount" if dist.without_old_amount else ""}</p>
{warnings}</section>
<section id="charts"><h2>Charts</h2><div class="grid">
<figure id="chart-histogram">{_svg(histogram_chart(impact, hist))}<figcaption>{_e(_histogram_caption(impact, hist))}
</figcaption></figure>
<figure id="chart-waterfall">{_svg(waterfall_chart(impact))}<figcaption>From the old total to the new, one
step per statement line.{zero_note}</figcaption></figure>
<figure id="chart-age">{_svg(age_chart(impact))}<figcaption>Change attributed to members of each age band
(see Drivers).</figcaption></figure></div></section>
<section id="lines"><h2>Per line</h2>{_line_table(impact.lines)}</section>
<section id="practices"><h2>Every practice</h2>
<p class="note">Sorted by delta, the largest loss first; click a column head to sort by it. Δ columns are each
line's delta (old and new per line: <code>capdsl diff --format csv</code>).</p>
{_practices_table(impact, names)}
<h3>Largest losers</h3>{_refs_table(dist.largest_losers, "No practice loses.", names)}
<h3>Largest gainers</h3>{_refs_table(dist.largest_gainers, "No practice gains.", names)}</section>
<section id="drivers">{_drivers_html(impact)}</section>
{_provenance_html(impact, context.provenance)}
<p class="note">Generated by capdsl diff. Amounts are exact decimals; chart bars are drawn from the same
values.</p>
</main><script>{SCRIPT}</script></body></html>
"""
    return page


def write_report(impact: Impact, path: str | Path, context: Context | None = None) -> Path:
    """Render and write the report atomically (a failed run leaves no half-written page)."""
    from capdsl.outputs import atomic_write

    require_report_extra()
    target = Path(path)
    atomic_write(target, render_html(impact, context))
    return target


def require_report_extra() -> None:
    """E0913 when altair or vl-convert is missing (checked before the diff's work starts)."""
    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError as exc:
        raise UsageError(error("E0913", f"--report needs the 'report' extra ({exc.name} is not installed)",
                               hint="pip install 'capdsl[report]'")) from None
