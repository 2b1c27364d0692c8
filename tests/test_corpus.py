"""The datasets path: map over a Dataset against a real loopback endpoint, results as columns, resumable."""
import json

import pytest
from datasets import Dataset, load_dataset

from summarizer import ArticleRecord, Summarizer
from summarizer.corpus import row_file, summarize_dataset
from summarizer.testing import InFlight, ScriptedServer

GOOD = "Talks {i}\n\nThe Valmont government said it wanted peace in round {i}. Ostrava urged Valmont to leave.\n"


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def make(n):
    rows = [{"id": f"doc/{i}", "text": GOOD.format(i=i)} for i in range(n)]
    if n > 3:
        rows[3]["text"] = "   "  # a bad row
    return Dataset.from_list(rows)


def test_map_adds_columns_writes_parquet_and_resumes(tmp_path, server):
    ds = make(10)
    s = Summarizer("openai", "scripted", base_url=server.url, api_key="x", cache=False)
    out = summarize_dataset(ds, s, tmp_path / "work", batch_size=4, concurrency=4)
    assert out.num_rows == 10 and out.column_names[:2] == ["id", "text"]
    assert out["status"].count("done") == 9
    bad = out[3]
    assert bad["status"] == "failed" and bad["error_kind"] == "input" and "doc/3" in bad["error"]
    assert bad["record"] is None
    for row in out:
        if row["status"] == "done":
            rec = ArticleRecord.model_validate_json(row["record"])
            assert rec.grounding_errors(row["text"]) == []
            assert row["n_actors"] == len(rec.actors) >= 1
            assert json.loads(row_file(tmp_path / "work", row["id"]).read_text())["provenance"]["source"] == row["id"]
    out.to_parquet(str(tmp_path / "out.parquet"))
    back = load_dataset("parquet", data_files=str(tmp_path / "out.parquet"), split="train")
    assert back["status"] == out["status"] and back["record"] == out["record"]

    # resumable: a rerun (e.g. after a kill) keeps every finished row and makes no model calls for them
    calls = len(server.requests)
    again = summarize_dataset(ds, s, tmp_path / "work", batch_size=4, concurrency=2)
    assert len(server.requests) == calls
    assert again["status"].count("skipped") == 9 and again["record"] == out["record"]


def test_missing_columns_are_clear_errors(tmp_path, server):
    s = Summarizer("openai", "scripted", base_url=server.url, api_key="x", cache=False)
    with pytest.raises(ValueError, match="no column 'body'"):
        summarize_dataset(make(2), s, tmp_path, text_column="body")
    with pytest.raises(ValueError, match="id_column=None"):
        summarize_dataset(make(2), s, tmp_path, id_column="uid")
    out = summarize_dataset(make(2).remove_columns("id"), s, tmp_path, id_column=None)
    assert out["status"] == ["done", "done"]


def test_cli_map_parquet_in_parquet_out(tmp_path, server):
    import subprocess
    import sys

    make(6).to_parquet(str(tmp_path / "in.parquet"))
    args = [sys.executable, "-m", "summarizer.cli", "map", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"),
            "-b", "openai", "-m", "scripted", "--base-url", server.url, "-c", "3", "--batch-size", "2"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # the one bad row
    assert "5 summarised, 0 up to date, 1 failed" in r.stderr
    out = load_dataset("parquet", data_files=str(tmp_path / "out.parquet"), split="train")
    assert out.num_rows == 6 and out["status"].count("done") == 5
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert "0 summarised, 5 up to date, 1 failed" in r.stderr


def test_a_concurrent_map_keeps_its_requests_in_flight_within_the_bound_and_gives_the_same_records(tmp_path):
    script = InFlight()
    with ScriptedServer(script) as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, api_key="x", cache=False)
        out = summarize_dataset(make(3).select(range(3)), s, tmp_path / "work", batch_size=3, concurrency=3)
        expected = [s.summarize(t) for t in out["text"]]
    assert out["status"] == ["done"] * 3
    assert 1 < script.peak <= 3
    for row, rec in zip(out, expected):
        got = ArticleRecord.model_validate_json(row["record"])
        assert got.positions == rec.positions and got.demands == rec.demands and got.actors == rec.actors
