"""Every gold fixture is a valid record whose quotes and mentions are verbatim in its article."""
import json
from pathlib import Path

import pytest

from summarizer.evals.scorer import grounded, locate
from summarizer.schema import ArticleRecord

ROOT = Path(__file__).resolve().parents[1]
GOLD = sorted(p for p in (ROOT / "fixtures").rglob("*.json"))


def test_fixture_set_is_complete():
    ids = {p.relative_to(ROOT / "fixtures").with_suffix("").as_posix() for p in GOLD}
    assert len([i for i in ids if i.startswith("seeds/")]) == 5
    assert len([i for i in ids if i.startswith("bbc/")]) == 12
    assert len([i for i in ids if i.startswith("synthetic/")]) >= 6
    for p in GOLD:
        assert p.with_suffix(".txt").is_file(), f"{p} has no article"


@pytest.mark.parametrize("path", GOLD, ids=lambda p: p.stem)
def test_gold_is_valid_and_grounded(path):
    text = path.with_suffix(".txt").read_text(encoding="utf-8")
    with open(path.with_suffix(".txt"), encoding="utf-8", newline="") as f:
        text = f.read()
    rec = ArticleRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))  # includes actor references
    assert rec.provenance is None
    assert rec.grounding_errors(text, require_offsets=False) == []
    for field, i, ev in rec.evidence_items():
        assert grounded(ev.quote, text), f"{field}[{i}] not grounded"
        assert locate(ev, text) is not None
        if ev.start is not None:
            assert text[ev.start:ev.end] == ev.quote
    if rec.headline is not None:
        assert text.startswith(rec.headline)
