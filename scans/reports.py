"""Reports of a scan: the document shared by JSON download and API, CSV, a server-side SVG chart, comparisons."""
from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from scans.models import CheckResult, Scan

RESULTS = ("pass", "fail", "warn", "skip", "na", "error")
LABELS = {"pass": "Pass", "fail": "Fail", "warn": "Warn", "skip": "Skipped", "na": "N/A", "error": "Error"}
COLOURS = {"pass": "#198754", "fail": "#dc3545", "warn": "#fd7e14", "skip": "#6c757d", "na": "#adb5bd",
           "error": "#6f42c1"}
CSV_COLUMNS = ["check_id", "section", "title", "level", "scored", "node_type", "source", "result", "reason",
               "remediation"]


def result_dict(r: CheckResult) -> dict[str, Any]:
    return {"check_id": r.check_id, "section": r.section, "title": r.title, "level": r.level, "scored": r.scored,
            "node_type": r.node_type, "source": r.source, "result": r.result, "reason": r.reason,
            "remediation": r.remediation, "evidence": r.evidence}


def document(scan: Scan) -> dict[str, Any]:
    """The whole report as one JSON document."""
    return {
        "scan": scan.pk, "cluster": scan.cluster.name, "profile": scan.profile_name, "benchmark": scan.benchmark,
        "trigger": scan.trigger, "state": scan.state, "reason": scan.reason,
        "kubernetes_version": scan.kubernetes_version, "distribution": scan.distribution,
        "created_at": scan.created_at.isoformat(), "finished_at": scan.finished_at.isoformat() if scan.finished_at else None,
        "counts": scan.counts, "score": scan.score, "sections": scan.sections,
        "results": [result_dict(r) for r in scan.results.all()],
        "raw": scan.raw,
    }


def to_csv(scan: Scan) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in scan.results.all():
        row = result_dict(r)
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas: such text is quoted."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def section_chart(scan: Scan, width: int = 720) -> str:
    """A horizontal stacked bar per section (pass/fail/warn/skip/N/A/error), as inline SVG."""
    sections = scan.sections or []
    label_w, bar_w, row_h = 200, width - 260, 26
    height = 40 + row_h * len(sections)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Results per section" font-family="sans-serif" font-size="12">']
    x = label_w
    for key in RESULTS:  # legend
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{COLOURS[key]}"/>'
                     f'<text x="{x + 14}" y="15">{LABELS[key]}</text>')
        x += 14 + 8 * len(LABELS[key]) + 14
    for i, sec in enumerate(sections):
        y = 30 + i * row_h
        total = max(1, sec.get("total", 0))
        title = f"{sec['section']} {sec.get('title', '')}"[:32]
        parts.append(f'<text x="0" y="{y + 15}">{escape(title)}</text>')
        offset = label_w
        for key in RESULTS:
            n = sec.get(key, 0)
            if not n:
                continue
            w = bar_w * n / total
            parts.append(f'<rect x="{offset:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{COLOURS[key]}">'
                         f'<title>{escape(sec["section"])} {LABELS[key]}: {n}</title></rect>')
            offset += w
        score = "—" if sec.get("score") is None else f"{sec['score']}%"
        parts.append(f'<text x="{label_w + bar_w + 8}" y="{y + 14}">{sec.get("total", 0)} · {score}</text>')
    parts.append("</svg>")
    return "".join(parts)


def compare(old: Scan, new: Scan) -> dict[str, Any]:
    """What changed between two scans of one cluster: checks that turned pass, that turned fail, other changes."""
    if old.cluster_id != new.cluster_id:
        raise ValueError("Only scans of the same cluster can be compared.")
    before = {r.check_id: r for r in old.results.all()}
    after = {r.check_id: r for r in new.results.all()}
    fixed, broken, changed = [], [], []
    for check_id, r in after.items():
        prev = before.get(check_id)
        if prev is None or prev.result == r.result:
            continue
        item = {"check_id": check_id, "title": r.title, "before": prev.result, "after": r.result, "reason": r.reason}
        if r.result == "pass":
            fixed.append(item)
        elif r.result == "fail":
            broken.append(item)
        else:
            changed.append(item)
    return {"cluster": new.cluster.name, "old": old.pk, "new": new.pk,
            "old_counts": old.counts, "new_counts": new.counts,
            "turned_pass": fixed, "turned_fail": broken, "other_changes": changed,
            "only_in_old": sorted(set(before) - set(after)), "only_in_new": sorted(set(after) - set(before))}
