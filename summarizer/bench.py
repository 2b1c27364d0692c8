"""Benchmarks: time, tokens and calls per article beside the model-only floor; remote throughput.

The floor is what llama.cpp alone needs for the work this run actually did: every call of
the embedded model into llama.cpp's decode (`Llama.eval`: reading prompt tokens not
already in the KV cache, and one step per emitted token) is timed, so
`wall / model seconds` is the overhead of everything else (grammar, sampling, instructor,
validation, parsing). A direct micro-benchmark of llama.cpp's prefill and decode rates
(same model object, build and threads) cross-checks it.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .pipeline import Summarizer


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a process so far (default: this one), in MB.

    Reads VmHWM from /proc: getrusage's ru_maxrss also counts the parent's memory at fork
    time (Linux carries the old address space's high-water mark over exec).
    """
    fallback = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else 0.0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            hwm = [line for line in f if line.startswith("VmHWM:")]
    except OSError:  # no /proc (not Linux) or the process has exited
        return fallback
    return int(hwm[0].split()[1]) / 1024 if hwm else fallback


@dataclass
class _Meter:
    seconds: float = 0.0
    prefill_tokens: int = 0   # tokens evaluated in batches (prompt tokens not reused from the KV cache)
    decode_steps: int = 0     # single-token evaluations (one per generated token)


class EvalMeter:
    """Times every llama.cpp decode call of a llama_cpp.Llama (installed on the instance)."""

    def __init__(self, llm: Any):
        self.llm, self.total, self.lock = llm, _Meter(), threading.Lock()
        original = llm.eval

        def timed_eval(tokens):
            t0 = time.perf_counter()
            try:
                return original(tokens)
            finally:
                dt = time.perf_counter() - t0
                with self.lock:
                    self.total.seconds += dt
                    if len(tokens) > 1:
                        self.total.prefill_tokens += len(tokens)
                    else:
                        self.total.decode_steps += len(tokens)

        self._original = original
        llm.eval = timed_eval

    def snapshot(self) -> _Meter:
        return _Meter(self.total.seconds, self.total.prefill_tokens, self.total.decode_steps)

    def since(self, s: _Meter) -> _Meter:
        return _Meter(self.total.seconds - s.seconds, self.total.prefill_tokens - s.prefill_tokens,
                      self.total.decode_steps - s.decode_steps)

    def remove(self) -> None:
        self.llm.eval = self._original


def llama_rates(llm: Any, prompt_tokens: int = 512, decode_tokens: int = 64) -> dict:
    """llama.cpp alone on this machine: prefill and decode tokens per second (KV cache reset first)."""
    text = ("The delegations met again on Tuesday to discuss the ceasefire, the exchange of prisoners "
            "and the reopening of the border crossings. ") * 40
    toks = llm.tokenize(text.encode(), add_bos=False)[:prompt_tokens]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for tok in toks[:decode_tokens]:
        llm.eval([tok])
    decode = time.perf_counter() - t0
    llm.reset()
    return {"prefill_tok_s": len(toks) / prefill, "decode_tok_s": min(decode_tokens, len(toks)) / decode}


def bench_articles(summarizer: Summarizer, articles: Iterable[tuple[str, str]],
                   on_article: Callable[[dict], None] | None = None) -> dict:
    """Summarise each (id, text) and measure it; returns per-article rows and aggregates."""
    t0 = time.perf_counter()
    # the local backend loads its model on first use: load it now, timed separately
    llm = summarizer.backend.llm if summarizer.backend.name == "local" else None
    load_s = time.perf_counter() - t0
    meter = EvalMeter(llm) if llm is not None else None
    opening_before = getattr(summarizer.backend, "opening_stats", None)
    rows = []
    try:
        for aid, text in articles:
            snap = meter.snapshot() if meter else None
            t = time.perf_counter()
            error, rec = None, None
            try:
                rec = summarizer.summarize(text)
            except Exception as e:  # noqa: BLE001 - a failed article is a row, not a crash
                error = f"{type(e).__name__}: {e}"
            wall = time.perf_counter() - t
            p = rec.provenance if rec else None
            row = {"id": aid, "seconds": wall, "error": error,
                   "prompt_tokens": p.usage.prompt_tokens if p else 0,
                   "completion_tokens": p.usage.completion_tokens if p else 0,
                   "calls": p.attempts if p else 0, "retries": p.retries if p else 0,
                   "cache_hits_only": bool(p and p.cached), "peak_rss_mb": peak_rss_mb()}
            row["completion_tok_s"] = row["completion_tokens"] / wall if wall > 0 else 0.0
            if meter:
                m = meter.since(snap)
                row.update(model_seconds=m.seconds, prefill_tokens=m.prefill_tokens, decode_steps=m.decode_steps,
                           floor_ratio=(wall / m.seconds) if m.seconds > 0 else None)
            rows.append(row)
            if on_article:
                on_article(row)
        rates = llama_rates(llm) if llm is not None and rows else None
    finally:
        if meter:
            meter.remove()
    return {"articles": rows, "aggregate": _aggregate(rows, load_s, rates),
            "backend": summarizer.backend.name, "model": summarizer.backend.model_id,
            "model_sha256": summarizer.backend.model_sha256, "prompt_version": summarizer.prompts.version,
            "threads": getattr(summarizer.backend, "n_threads", None),
            "n_batch": getattr(summarizer.backend, "n_batch", None),
            "n_ctx": getattr(summarizer.backend, "n_ctx", None),
            # the first call's shared prompt opening: computed (and saved) or restored from disk
            "opening": (None if getattr(summarizer.backend, "opening_stats", None) is opening_before
                        else summarizer.backend.opening_stats)}


def _aggregate(rows: list[dict], load_s: float, rates: dict | None) -> dict:
    secs = [r["seconds"] for r in rows]
    agg: dict[str, Any] = {
        "n_articles": len(rows), "failed": sum(r["error"] is not None for r in rows),
        "model_load_s": load_s,
        "median_s": statistics.median(secs) if secs else 0.0,
        "mean_s": statistics.fmean(secs) if secs else 0.0,
        "total_s": sum(secs),
        "median_s_incl_load": statistics.median([secs[0] + load_s] + secs[1:]) if secs else 0.0,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "calls": sum(r["calls"] for r in rows), "retries": sum(r["retries"] for r in rows),
        "peak_rss_mb": peak_rss_mb(),
    }
    agg["completion_tok_s"] = agg["completion_tokens"] / agg["total_s"] if agg["total_s"] else 0.0
    if rows and "model_seconds" in rows[0]:
        model_s = sum(r["model_seconds"] for r in rows)
        agg.update(model_seconds=model_s, prefill_tokens=sum(r["prefill_tokens"] for r in rows),
                   decode_steps=sum(r["decode_steps"] for r in rows),
                   floor_ratio=agg["total_s"] / model_s if model_s else None)
        if rates:
            est = agg["prefill_tokens"] / rates["prefill_tok_s"] + agg["decode_steps"] / rates["decode_tok_s"]
            agg.update(rates=rates, floor_estimate_s=est,
                       # without KV reuse every prompt token would be read again
                       floor_without_kv_reuse_s=agg["prompt_tokens"] / rates["prefill_tok_s"]
                       + agg["completion_tokens"] / rates["decode_tok_s"])
    return agg


# -- remote throughput -------------------------------------------------------------------

def synthetic_articles(n: int) -> list[tuple[str, str]]:
    """n short distinct articles, each with two sentences that need a model call."""
    return [(f"a{i:04d}", f"Talks {i}\n\nThe Valmont government said it wanted peace in round {i}. "
                          f"Ostrava urged Valmont to withdraw from sector {i}.\n") for i in range(n)]


def start_loopback(latency: float) -> tuple[subprocess.Popen, str]:
    """Start `python -m summarizer.testing --latency L` in its own process; returns it and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "summarizer.testing", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("loopback server did not start")
    return proc, url


def bench_throughput(concurrencies: list[int], n_articles: int = 200, latency: float = 0.2,
                     url: str | None = None) -> list[dict]:
    """Articles/s of a folder run at each concurrency against a fixed-latency loopback endpoint.

    The run is `batch.summarize_folder`, the CLI's folder path (so concurrency > 1 runs on its
    asyncio event loop). The ideal is latency-bound: each article needs `calls` sequential
    requests of `latency` seconds, so c parallel articles give at most c / (calls * latency)
    articles/s.
    """
    from .batch import summarize_folder

    proc = None
    if url is None:
        proc, url = start_loopback(latency)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in"
            inp.mkdir()
            for aid, text in synthetic_articles(n_articles):
                (inp / f"{aid}.txt").write_text(text, encoding="utf-8")
            for c in concurrencies:
                s = Summarizer("openai", "scripted", base_url=url, api_key="x", cache=False)
                out = Path(tmp) / f"out{c}"
                t0 = time.perf_counter()
                res = summarize_folder(inp, out, s, concurrency=c, use_existing=False)
                wall = time.perf_counter() - t0
                s.close()
                calls = [json.loads(p.read_text())["provenance"]["attempts"] for p in out.glob("*.json")]
                per_article = statistics.fmean(calls) if calls else 0.0
                ideal = c / (per_article * latency) if per_article else 0.0
                rate = len(calls) / wall
                results.append({"concurrency": c, "articles": n_articles, "done": res.count("done"),
                                "failed": len(res.failed), "seconds": wall, "articles_per_s": rate,
                                "calls_per_article": per_article, "latency_s": latency,
                                "ideal_articles_per_s": ideal, "ratio_to_ideal": rate / ideal if ideal else 0.0})
    finally:
        if proc:
            proc.kill()
            proc.wait()
    return results
