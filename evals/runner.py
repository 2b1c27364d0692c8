"""Run an extractor over a fixture folder, score it, and build the JSON report."""
from __future__ import annotations

import datetime as _dt
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from summarizer.schema import ArticleRecord

from .scorer import FIELDS, aggregate, score_article


@dataclass
class Fixture:
    id: str          # path of the .txt relative to the fixture folder, without suffix
    text: str
    gold: dict

    def gold_record(self) -> ArticleRecord:
        """The gold record, validated."""
        return ArticleRecord.model_validate(self.gold)


def load_fixtures(folder: str | Path) -> list[Fixture]:
    """Every <stem>.txt with a sibling <stem>.json under folder (recursively), sorted by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"fixture folder not found: {folder}")
    out = []
    for gold in sorted(folder.rglob("*.json")):
        txt = gold.with_suffix(".txt")
        if not txt.is_file():
            continue
        with open(txt, encoding="utf-8", newline="") as f:
            text = f.read()
        out.append(Fixture(txt.relative_to(folder).with_suffix("").as_posix(), text,
                           json.loads(gold.read_text(encoding="utf-8"))))
    if not out:
        raise FileNotFoundError(f"no fixtures (<stem>.txt + <stem>.json pairs) under {folder}")
    return out


def git_commit() -> Optional[str]:
    """The current git commit of the working directory, if any."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return None


def run_eval(fixtures: list[Fixture], extract: Callable[[str], object], info: dict,
             on_article: Callable[[str, dict], None] | None = None) -> dict:
    """Extract every fixture, score it against its gold, and return the report dict.

    `extract(text)` returns an ArticleRecord or a dict (a naive extractor may return
    an invalid dict: it is scored as invalid). Exceptions count as invalid predictions.
    """
    rows, scores = [], []
    t_start = time.perf_counter()
    for fx in fixtures:
        t0 = time.perf_counter()
        error = None
        try:
            pred = extract(fx.text)
        except Exception as e:  # noqa: BLE001 - a failure is an invalid prediction, not a crash
            pred, error = None, f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - t0
        pred_dict = pred.model_dump(mode="json") if isinstance(pred, ArticleRecord) else pred
        sc = score_article(fx.gold, pred if pred is not None else None, fx.text)
        if sc.latency_s is None:
            sc.latency_s = seconds
        row = {"id": fx.id, "seconds": round(seconds, 3), "error": error, "scores": sc.to_dict(),
               "predicted": pred_dict}
        rows.append(row)
        scores.append(sc)
        if on_article:
            on_article(fx.id, row)
    agg = aggregate(scores)
    n = len(rows)
    secs = sorted(r["seconds"] for r in rows)
    tokens = [r["predicted"]["provenance"]["usage"] for r in rows
              if isinstance(r["predicted"], dict) and r["predicted"].get("provenance")]
    return {
        "overall_f1": agg["overall_f1"],
        "aggregate": agg,
        "timing": {"wall_s": round(time.perf_counter() - t_start, 2),
                   "seconds_per_article_mean": sum(secs) / n if n else None,
                   "seconds_per_article_median": secs[n // 2] if n else None,
                   "prompt_tokens": sum(t["prompt_tokens"] for t in tokens),
                   "completion_tokens": sum(t["completion_tokens"] for t in tokens),
                   "model_calls": sum(t["model_calls"] for t in tokens)},
        "provenance": {"git_commit": git_commit(),
                       "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       **info},
        "articles": rows,
    }


def field_f1s(report: dict) -> dict[str, float]:
    """{'overall': F1, 'actors': F1, ...} of a report."""
    agg = report["aggregate"]
    return {"overall": report["overall_f1"], **{f: agg[f]["f1"] for f in FIELDS}}


def compare(report: dict, baseline: dict) -> dict:
    """Per-field F1 deltas and the articles whose overall F1 fell, against a baseline report."""
    now, before = field_f1s(report), field_f1s(baseline)
    deltas = {k: now[k] - before.get(k, 0.0) for k in now}
    old = {r["id"]: r["scores"]["overall_f1"] for r in baseline.get("articles", [])}
    worse = [{"id": r["id"], "before": old[r["id"]], "after": r["scores"]["overall_f1"]}
             for r in report["articles"] if r["id"] in old and r["scores"]["overall_f1"] < old[r["id"]] - 1e-9]
    return {"deltas": deltas, "worse": sorted(worse, key=lambda w: w["after"] - w["before"])}


def check_thresholds(report: dict, thresholds: dict) -> list[str]:
    """Failures of a report against thresholds {overall_f1, valid_rate, grounded_rate, field_f1: {...}}."""
    agg = report["aggregate"]
    fails = []
    for key in ("overall_f1", "valid_rate", "grounded_rate"):
        if key in thresholds and agg[key] < thresholds[key]:
            fails.append(f"{key} {agg[key]:.4f} < threshold {thresholds[key]:.4f}")
    for f, t in thresholds.get("field_f1", {}).items():
        if agg[f]["f1"] < t:
            fails.append(f"{f} F1 {agg[f]['f1']:.4f} < threshold {t:.4f}")
    return fails
