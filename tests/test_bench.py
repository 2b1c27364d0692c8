"""`summarizer bench`: the numbers it prints are consistent (no timing thresholds: timings are the bench's job)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "summarizer.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env={"COLUMNS": "200", **__import__("os").environ})


def test_loopback_throughput_table_and_json(tmp_path):
    r = cli("bench", "--loopback", "--articles", "8", "-c", "1", "-c", "4", "--latency", "0.05",
            "--json", str(tmp_path / "t.json"))
    assert r.returncode == 0, r.stderr
    assert "articles/s" in r.stdout and "ideal" in r.stdout
    rows = json.loads((tmp_path / "t.json").read_text())["throughput"]
    assert [x["concurrency"] for x in rows] == [1, 4]
    for x in rows:
        assert x["done"] == 8 and x["failed"] == 0 and x["calls_per_article"] == 3
        assert x["ideal_articles_per_s"] == pytest.approx(x["concurrency"] / (3 * 0.05))
        # a 50 ms reply per call bounds the rate from above: never faster than the ideal
        assert 0 < x["ratio_to_ideal"] <= 1.0


@pytest.mark.slow
def test_embedded_bench_reports_the_model_only_floor(tmp_path):
    art = tmp_path / "arts"
    art.mkdir()
    (art / "one.txt").write_text("Talks\n\nThe Valmont government said it wanted peace. "
                                 "Ostrava urged Valmont to withdraw its troops.\n")
    r = cli("bench", str(art), "--warm", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    assert "× the floor" in r.stdout
    runs = json.loads((tmp_path / "b.json").read_text())
    cold, warm = runs["cold"], runs["warm"]
    row = cold["articles"][0]
    assert row["error"] is None and row["calls"] >= 2
    assert 0 < row["model_seconds"] <= row["seconds"]       # llama.cpp time is part of the wall time
    # the default decoder (auto): the actor rows take one decode step per token, the sentence answers
    # are guided (their fixed text rides along in batches), so fewer steps than answer tokens
    assert 0 < row["decode_steps"] < row["completion_tokens"]
    assert cold["aggregate"]["floor_ratio"] >= 1.0
    assert cold["aggregate"]["rates"]["prefill_tok_s"] > cold["aggregate"]["rates"]["decode_tok_s"] > 0
    w = warm["articles"][0]
    assert w["cache_hits_only"] and w["model_seconds"] == 0 and w["decode_steps"] == 0  # warm: no model work
