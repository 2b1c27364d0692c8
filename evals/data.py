"""Fixtures and reports as Hugging Face `datasets` objects (Parquet / JSONL export)."""
from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from .runner import load_fixtures


def fixtures_dataset(folder: str | Path) -> Dataset:
    """One row per fixture article: id, text, gold (the record as JSON text) and headline."""
    rows = [{"id": f.id, "text": f.text, "headline": f.gold.get("headline"),
             "gold": json.dumps(f.gold, ensure_ascii=False)} for f in load_fixtures(folder)]
    return Dataset.from_list(rows)


def report_dataset(report: dict) -> Dataset:
    """One row per article of a report: id, overall and per-field F1, seconds, error, predicted record."""
    rows = []
    for r in report["articles"]:
        s = r["scores"]
        rows.append({"id": r["id"], "overall_f1": s["overall_f1"], "valid": s["valid"],
                     "grounded_rate": s["grounded_rate"], "seconds": r["seconds"], "error": r["error"],
                     **{f"{f}_f1": s[f]["f1"] for f in ("actors", "positions", "demands", "figures")},
                     "predicted": json.dumps(r["predicted"], ensure_ascii=False)})
    return Dataset.from_list(rows)


def export_report(report: dict, out: str | Path) -> list[Path]:
    """Write the per-article rows of a report as <out>.parquet and <out>.jsonl."""
    out = Path(out)
    ds = report_dataset(report)
    paths = [out.with_suffix(".parquet"), out.with_suffix(".jsonl")]
    ds.to_parquet(str(paths[0]))
    ds.to_json(str(paths[1]), lines=True)
    return paths
