"""The prompt opening's KV state kept on disk between processes (real model)."""
import pytest

from summarizer import Summarizer
from summarizer.bench import EvalMeter

pytestmark = pytest.mark.slow


def _fresh_process_run(kv_dir, text):
    """Summarise as the first call of a new process would: the model's KV cache starts empty."""
    s = Summarizer(cache=False, kv_dir=kv_dir)
    s.backend.llm.reset()
    meter = EvalMeter(s.backend.llm)
    try:
        rec = s.summarize(text)
    finally:
        meter.remove()
    stats = dict(s.backend.opening_stats, prefill=meter.total.prefill_tokens)
    s.close()
    return rec, stats


def _content(rec):
    return rec.model_dump(include={"actors", "positions", "demands", "figures"})


def test_a_new_process_restores_the_opening_and_answers_the_same(tmp_path, short_text):
    kv = tmp_path / "kv"
    first, built = _fresh_process_run(kv, short_text)
    assert built["source"] == "computed" and built["tokens"] > 500
    files = list(kv.glob("opening-*.kv"))
    assert len(files) == 1

    again, restored = _fresh_process_run(kv, short_text)
    assert restored["source"] == "disk" and restored["tokens"] == built["tokens"]
    assert _content(again) == _content(first)
    # the restored state was used: llama.cpp read every prompt token but the opening's
    assert restored["prefill"] == built["prefill"] - built["tokens"]


def test_a_corrupt_state_file_is_rebuilt_not_fatal(tmp_path, short_text):
    kv = tmp_path / "kv"
    first, _ = _fresh_process_run(kv, short_text)
    (path,) = kv.glob("opening-*.kv")
    path.write_bytes(b"not a llama.cpp state" * 100)
    rec, stats = _fresh_process_run(kv, short_text)
    assert stats["source"] == "computed"
    assert _content(rec) == _content(first)
    _, restored = _fresh_process_run(kv, short_text)  # the rewritten file loads
    assert restored["source"] == "disk"

