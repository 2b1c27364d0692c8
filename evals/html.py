"""One self-contained HTML page: per article, gold and predicted items side by side and
their evidence highlighted in the text (gold underlined green, predicted shaded blue)."""
from __future__ import annotations

import html
import json

from .runner import Fixture
from .scorer import FIELDS, locate

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;font-size:90%;vertical-align:top}
.article{white-space:pre-wrap;border:1px solid #ddd;padding:.8em;line-height:1.6;font-family:Georgia,serif}
.g{border-bottom:3px solid #2a2}.p{background:#cde3ff}.cols{display:flex;gap:1em}.cols>div{flex:1;min-width:0}
h2{border-top:2px solid #333;padding-top:.5em}.f1{font-weight:bold}.bad{color:#b00}
"""


def _spans(record: dict | None, text: str) -> list[tuple[int, int]]:
    out = []
    for f in ("positions", "demands", "figures"):
        for item in (record or {}).get(f, []) or []:
            ev = item.get("evidence") or {}
            loc = locate(ev, text) if ev.get("quote") else None
            if loc:
                out.append(loc)
    return out


def _highlight(text: str, gold: list, pred: list) -> str:
    marks = [0] * (len(text) + 1)
    for cls, spans in ((1, gold), (2, pred)):
        for s, e in spans:
            for i in range(s, e):
                marks[i] |= cls
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and marks[j] == marks[i]:
            j += 1
        chunk = html.escape(text[i:j])
        m = marks[i]
        if m:
            cls = " ".join(c for c, bit in (("g", 1), ("p", 2)) if m & bit)
            chunk = f'<span class="{cls}">{chunk}</span>'
        out.append(chunk)
        i = j
    return "".join(out)


def _items(record: dict | None, field: str) -> str:
    rows = []
    for it in (record or {}).get(field, []) or []:
        if field == "actors":
            cells = [it.get("name"), it.get("kind"), it.get("country"), "; ".join(it.get("mentions") or [])]
        elif field == "figures":
            cells = [f'{it.get("value"):g}' if isinstance(it.get("value"), (int, float)) else it.get("value"),
                     it.get("unit"), it.get("qualifier"), (it.get("evidence") or {}).get("quote")]
        elif field == "demands":
            cells = [it.get("actor"), ", ".join(it.get("addressees") or []), it.get("action"),
                     (it.get("evidence") or {}).get("quote")]
        else:
            cells = [it.get("actor"), it.get("topic"), it.get("stance"), (it.get("evidence") or {}).get("quote")]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells) + "</tr>")
    return f"<table>{''.join(rows)}</table>" if rows else "<p><i>none</i></p>"


def render(report: dict, fixtures: list[Fixture]) -> str:
    """The HTML page for a report and the fixtures it was run on."""
    by_id = {f.id: f for f in fixtures}
    agg = report["aggregate"]
    head = "".join(f"<tr><td>{f}</td><td>{agg[f]['precision']:.3f}</td><td>{agg[f]['recall']:.3f}</td>"
                   f"<td>{agg[f]['f1']:.3f}</td></tr>" for f in FIELDS)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>summarizer eval</title>"
             f"<style>{_CSS}</style></head><body><h1>summarizer eval</h1>"
             f"<p class='f1' id='overall'>overall F1 {report['overall_f1']:.3f} · valid {agg['valid_rate']:.3f}"
             f" · grounded {agg['grounded_rate']:.3f} · {len(report['articles'])} articles</p>"
             f"<p>{html.escape(json.dumps(report.get('provenance', {})))}</p>"
             f"<table><tr><th>field</th><th>P</th><th>R</th><th>F1</th></tr>{head}</table>"
             "<p>Evidence: <span class='g'>gold</span> · <span class='p'>predicted</span></p>"]
    for row in report["articles"]:
        fx = by_id.get(row["id"])
        if fx is None:
            continue
        pred = row.get("predicted") if isinstance(row.get("predicted"), dict) else None
        sc = row["scores"]
        parts.append(f"<section class='article-report' id='{html.escape(row['id'])}'>"
                     f"<h2>{html.escape(row['id'])} <span class='f1'>F1 {sc['overall_f1']:.3f}</span></h2>")
        if row.get("error"):
            parts.append(f"<p class='bad'>error: {html.escape(row['error'])}</p>")
        parts.append(f"<div class='article'>{_highlight(fx.text, _spans(fx.gold, fx.text), _spans(pred, fx.text))}</div>")
        for field in FIELDS:
            s = sc[field]
            parts.append(f"<h3>{field} — P {s['precision']:.2f} R {s['recall']:.2f} F1 {s['f1']:.2f}</h3>"
                         f"<div class='cols'><div><b>gold</b>{_items(fx.gold, field)}</div>"
                         f"<div><b>predicted</b>{_items(pred, field)}</div></div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)
