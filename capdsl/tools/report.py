"""The `capdsl diff --report` page: one self-contained HTML file.

Charts are Vega-Lite specs (built with altair) rendered to static SVG at
write time by vl-convert, which bundles Vega and runs offline; the page
itself has no script, no external stylesheet and no web font, so it opens
anywhere (mail attachment, air-gapped laptop) and looks the same.

Amounts are Decimal throughout; they become floats only inside the chart
data (`_f`), where a cent of rounding in a bar's height is invisible. Every
number printed in the page text comes from the Decimal values.
"""

from __future__ import annotations

import html
from decimal import Decimal
from pathlib import Path

from capdsl.tools.impact import EVENTS_WITHOUT_MEMBER, Impact, LineDelta, PracticeRef
from capdsl.errors import UsageError, error

ZERO = Decimal(0)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2933;
background:#f5f7fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px;border-bottom:1px solid #d9e2ec;
padding-bottom:4px}
.sub{color:#52606d;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:12px 16px;min-width:150px}
.card .k{color:#52606d;font-size:.85em}.card .v{font-size:1.35em;font-weight:600;font-variant-numeric:tabular-nums}
.neg{color:#b42318}.pos{color:#067647}
table{border-collapse:collapse;background:#fff;width:100%;font-size:.9em;margin:6px 0 12px}
th,td{border:1px solid #e4e7eb;padding:4px 8px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f0f4f8}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
figure{background:#fff;border:1px solid #d9e2ec;border-radius:6px;margin:0;padding:8px;overflow-x:auto}
figcaption{color:#52606d;font-size:.85em;margin-top:4px}
.tag{display:inline-block;font-size:.75em;padding:0 6px;border-radius:8px;background:#fff3c4}
.note{color:#52606d;font-size:.85em}
@media (max-width:800px){.grid{grid-template-columns:1fr}}
"""


def _f(value: Decimal | None) -> float | None:
    """Chart data only: Vega-Lite needs floats (never used for printed amounts)."""
    return None if value is None else float(value)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def money(value: Decimal, currency: str = "") -> str:
    text = f"{value:,.2f}".replace(",", "\u202f")
    return f"{text} {currency}".strip()


def signed(value: Decimal | None, suffix: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:+,.2f}".replace(",", "\u202f") + suffix
    cls = "neg" if value < 0 else ("pos" if value > 0 else "")
    return f'<span class="{cls}">{_e(text)}</span>'


# ─────────────────────────────── charts ─────────────────────────────────────

def _svg(chart) -> str:
    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    return svg[svg.index("<svg"):] if "<svg" in svg else svg


def histogram_chart(impact: Impact):
    import altair as alt

    data = [{"delta_pct": _f(p.delta_pct)} for p in impact.practices if p.delta_pct is not None]
    base = alt.Chart(alt.Data(values=data or [{"delta_pct": 0.0}]))
    bars = base.mark_bar(color="#3e7cb1").encode(
        x=alt.X("delta_pct:Q", bin=alt.Bin(maxbins=40), title="change per practice (%)"),
        y=alt.Y("count():Q", title="practices"))
    rules = alt.Chart(alt.Data(values=[{"x": -5.0}, {"x": 5.0}])).mark_rule(
        color="#b42318", strokeDash=[4, 3]).encode(x="x:Q")
    return (bars + rules).properties(width=420, height=240, title="Distribution of practice deltas")


def waterfall_chart(impact: Impact):
    import altair as alt

    cumulative, running = [impact.old_total], impact.old_total
    for ln in impact.lines:
        running += ln.delta
        cumulative.append(running)
    low, high = min(cumulative), max(cumulative)
    # Totals start at a floor below the lowest step, so small line deltas stay visible
    # next to large totals; the axis title says the axis does not start at 0.
    floor = max(ZERO, low - (high - low)) if high != low else ZERO
    rows, running = [], impact.old_total
    rows.append({"step": "old total", "start": _f(floor), "end": _f(running), "kind": "total",
                 "amount": _f(running), "order": 0})
    for i, ln in enumerate(impact.lines, start=1):
        nxt = running + ln.delta
        rows.append({"step": ln.id, "start": _f(running), "end": _f(nxt),
                     "kind": "increase" if ln.delta >= 0 else "decrease", "amount": _f(ln.delta), "order": i})
        running = nxt
    rows.append({"step": "new total", "start": _f(floor), "end": _f(impact.new_total), "kind": "total",
                 "amount": _f(impact.new_total), "order": len(rows)})
    order = [r["step"] for r in rows]
    return alt.Chart(alt.Data(values=rows)).mark_bar(size=28).encode(
        x=alt.X("step:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("start:Q", title=f"amount ({impact.currency})" + (", axis not from 0" if floor else ""),
                scale=alt.Scale(zero=floor == 0)),
        y2="end:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=["total", "increase", "decrease"],
                                                  range=["#52606d", "#067647", "#b42318"]), legend=None),
    ).properties(width=420, height=240, title="Old → new, line by line")


def age_chart(impact: Impact):
    import altair as alt

    groups = [g for g in (impact.drivers.groups if impact.drivers else []) if g.dimension == "age band"]
    data = [{"band": g.group, "delta": _f(g.delta), "sign": "gain" if g.delta >= 0 else "loss"} for g in groups]
    order = [g.group for g in groups]
    return alt.Chart(alt.Data(values=data or [{"band": "(no members)", "delta": 0.0, "sign": "gain"}])).mark_bar(
    ).encode(
        x=alt.X("band:N", sort=order, title="age band", axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("delta:Q", title=f"delta ({impact.currency})"),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["gain", "loss"], range=["#067647", "#b42318"]),
                        legend=None),
    ).properties(width=900, height=240, title="Delta by age band")


# ─────────────────────────────── tables ─────────────────────────────────────

def _line_table(lines: list[LineDelta], currency: str) -> str:
    out = ['<table><tr><th>line</th><th class="n">old</th><th class="n">new</th><th class="n">delta</th>'
           '<th class="n">delta %</th></tr>']
    for ln in lines:
        tag = f' <span class="tag">{_e(ln.status)}</span>' if ln.status != "both" else ""
        out.append(f'<tr><td>{_e(ln.label)} <span class="note">({_e(ln.id)})</span>{tag}</td>'
                   f'<td class="n">{money(ln.old)}</td><td class="n">{money(ln.new)}</td>'
                   f'<td class="n">{signed(ln.delta)}</td><td class="n">{signed(ln.delta_pct, " %")}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _practice_table(refs: list[PracticeRef], empty: str) -> str:
    if not refs:
        return f'<p class="note">{_e(empty)}</p>'
    out = ['<table><tr><th>practice</th><th class="n">old</th><th class="n">new</th><th class="n">delta</th>'
           '<th class="n">delta %</th></tr>']
    for r in refs:
        out.append(f'<tr><td>{_e(r.practice_id)}</td><td class="n">{money(r.old)}</td><td class="n">{money(r.new)}'
                   f'</td><td class="n">{signed(r.delta)}</td><td class="n">{signed(r.delta_pct, " %")}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _drivers_html(impact: Impact) -> str:
    d = impact.drivers
    if d is None:
        return '<p class="note">Drivers were not computed (--no-drivers).</p>'
    parts = ['<h2>Drivers</h2><h3>By line</h3><table><tr><th>line</th><th class="n">delta</th>'
             '<th class="n">share of the change</th></tr>']
    for ln in d.lines:
        parts.append(f'<tr><td>{_e(ln.label)}</td><td class="n">{signed(ln.delta)}</td>'
                     f'<td class="n">{signed(ln.share_pct, " %") if ln.share_pct is not None else "—"}</td></tr>')
    parts.append("</table>")
    flags = [g for g in d.groups if g.dimension not in ("age band", "age band × flags")]
    if flags:
        parts.append('<h3>By member flag</h3><table><tr><th>flag</th><th>group</th><th class="n">member-months</th>'
                     '<th class="n">old</th><th class="n">new</th><th class="n">delta</th></tr>')
        for g in flags:
            parts.append(f'<tr><td>{_e(g.dimension)}</td><td>{_e(g.group)}</td><td class="n">{money(g.member_months)}'
                         f'</td><td class="n">{money(g.old)}</td><td class="n">{money(g.new)}</td>'
                         f'<td class="n">{signed(g.delta)}</td></tr>')
        parts.append("</table>")
    if d.tiers:
        parts.append('<h3>Tiers and practice tables (entry matched, old → new)</h3><table><tr><th>table</th>'
                     '<th>old entry</th><th>new entry</th><th class="n">practices</th><th class="n">delta</th></tr>')
        for s in d.tiers:
            parts.append(f'<tr><td>{_e(s.table)}</td><td>{_e(s.old_entry)}</td><td>{_e(s.new_entry)}</td>'
                         f'<td class="n">{s.practices}</td><td class="n">{signed(s.delta)}</td></tr>')
        parts.append("</table>")
    if d.unattributed:
        parts.append('<h3>Not attributable to member groups</h3><table><tr><th>line</th><th class="n">delta</th>'
                     '<th>why</th></tr>')
        for u in d.unattributed:
            parts.append(f'<tr><td>{_e(u.line)}</td><td class="n">{signed(u.delta)}</td><td>{_e(u.reason)}</td></tr>')
        parts.append("</table>")
    parts.append(f'<p class="note">Member groups: each line re-evaluated on each group\'s members alone '
                 f'(exact for lines additive over members; the rest is listed above). Events whose member is '
                 f'unknown are the group “{_e(EVENTS_WITHOUT_MEMBER)}”.</p>')
    return "".join(parts)


# ─────────────────────────────── the page ───────────────────────────────────

def render_html(impact: Impact) -> str:
    """The whole report as one HTML string (charts as inline SVG)."""
    cur = impact.currency
    dist = impact.distribution
    same_file = impact.old.path == impact.new.path
    old_name = f"{impact.old.contract} — {impact.old.period}" + (
        f" ({', '.join(impact.old.settings)})" if impact.old.settings else "")
    new_name = f"{impact.new.contract} — {impact.new.period}" + (
        f" ({', '.join(impact.new.settings)})" if impact.new.settings else "")
    rate = (f'<p class="note">Old amounts converted from {_e(impact.old.currency)} at {impact.rate} '
            f'{_e(cur)} per {_e(impact.old.currency)}.</p>') if impact.rate is not None else ""
    quant = " · ".join(f"p{q.q}: {q.delta_pct:+.2f} %" for q in dist.quantiles)
    cards = [("old total", money(impact.old_total, cur), ""), ("new total", money(impact.new_total, cur), ""),
             ("delta", signed(impact.delta, f" {cur}"), ""), ("delta %", signed(impact.delta_pct, " %"), ""),
             ("practices", str(dist.practices), ""),
             ("losing more than 5 %", f'<span class="neg">{dist.losing_over_5pct}</span>', ""),
             ("gaining more than 5 %", f'<span class="pos">{dist.gaining_over_5pct}</span>', "")]
    card_html = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>'
                        for k, v, _ in cards)
    warnings = "".join(f"<li>{_e(w)}</li>" for w in impact.warnings)
    if warnings:
        warnings = (f'<details class="note"><summary>{len(impact.warnings)} warnings from loading the panel'
                    f'</summary><ul>{warnings}</ul></details>')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>capdsl diff — {_e(impact.new.contract)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Contract impact{": " + _e(impact.new.contract) if same_file else ""}</h1>
<p class="sub">old: {_e(old_name)} <span class="note">({_e(impact.old.path)})</span><br>
new: {_e(new_name)} <span class="note">({_e(impact.new.path)})</span><br>
engine {_e(impact.engine)} · amounts in {_e(cur)}</p>
{rate}
<section id="summary"><h2>Summary</h2><div class="cards">{card_html}</div>
<p class="note">Delta % quantiles over practices: {_e(quant) or "—"}
{f"· {dist.without_old_amount} practices had no old amount" if dist.without_old_amount else ""}</p>
{warnings}</section>
<section id="charts"><h2>Charts</h2><div class="grid">
<figure id="chart-histogram">{_svg(histogram_chart(impact))}<figcaption>Practices by change in total payment;
dashed lines at ±5 %.</figcaption></figure>
<figure id="chart-waterfall">{_svg(waterfall_chart(impact))}<figcaption>From the old total to the new, one
step per statement line.</figcaption></figure></div>
<figure id="chart-age" style="margin-top:16px">{_svg(age_chart(impact))}<figcaption>Change attributed to
members of each age band (see Drivers).</figcaption></figure></section>
<section id="lines"><h2>Per line</h2>{_line_table(impact.lines, cur)}</section>
<section id="practices"><h2>Largest losers</h2>{_practice_table(dist.largest_losers, "No practice loses.")}
<h2>Largest gainers</h2>{_practice_table(dist.largest_gainers, "No practice gains.")}</section>
<section id="drivers">{_drivers_html(impact)}</section>
<p class="note">Generated by capdsl diff. Amounts are exact decimals; chart bars are drawn from the same
values.</p>
</main></body></html>
"""
    return page


def write_report(impact: Impact, path: str | Path) -> Path:
    """Render and write the report atomically (a failed run leaves no half-written page)."""
    from capdsl.outputs import atomic_write

    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError as exc:
        raise UsageError(error("E0913", f"--report needs the 'report' extra ({exc.name} is not installed)",
                               hint="pip install 'capdsl[report]'")) from None
    target = Path(path)
    atomic_write(target, render_html(impact))
    return target
