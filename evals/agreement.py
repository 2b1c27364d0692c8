"""Inter-annotator agreement: score an independent second labelling against the gold fixtures.

    python -m summarizer.evals.agreement [SECOND_DIR] [GOLD_DIR]

The second annotator's records are scored as predictions with the same scorer, so the
result is the ceiling any model can be measured against on these articles.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .runner import load_fixtures
from .scorer import FIELDS, aggregate, score_article


def agreement(second_dir: str | Path, gold_dir: str | Path) -> dict:
    """Aggregate scores of the records in second_dir against the same articles in gold_dir."""
    second = load_fixtures(second_dir)
    gold = {f.id.split("/")[-1]: f for f in load_fixtures(gold_dir)}
    scores, rows = [], []
    for s in second:
        g = gold[s.id.split("/")[-1]]
        assert g.text == s.text, f"{s.id}: article differs from the gold copy"
        sc = score_article(g.gold, s.gold, g.text)
        scores.append(sc)
        rows.append({"id": g.id, **{f: round(sc.fields[f].f1, 3) for f in FIELDS}, "overall": round(sc.overall_f1, 3)})
    return {"articles": rows, "aggregate": aggregate(scores)}


def main() -> None:
    here = Path(__file__).resolve().parent
    second = sys.argv[1] if len(sys.argv) > 1 else here / "agreement"
    gold = sys.argv[2] if len(sys.argv) > 2 else here.parent / "fixtures"
    res = agreement(second, gold)
    agg = res["aggregate"]
    for r in res["articles"]:
        print(json.dumps(r))
    print("micro:", json.dumps({f: round(agg[f]["f1"], 3) for f in FIELDS} | {"overall": round(agg["overall_f1"], 3)}))
    for f in ("positions", "demands"):
        print(f, "actor accuracy", round(agg[f].get("actor_accuracy") or 0, 3), "strict F1", round(agg[f]["strict_f1"], 3))


if __name__ == "__main__":
    main()
