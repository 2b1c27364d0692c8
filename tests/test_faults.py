"""Every fault mode of the loopback fault server, in one batch through the real CLI.

Each article carries a marker word; the `Faults` script injects that article's fault. A
transient run (each fault fires twice, then the endpoint recovers) must finish every
article; a persistent run must end each faulty article as one clean error line after a
bounded number of requests while the healthy ones complete. Nothing ungrounded is ever
written, and attempts and token usage are recorded per article. Both batch paths run every
case: one article at a time (the sync path) and --concurrency 4 (the asyncio path), and end
with the same error lines.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from summarizer import ArticleRecord
from summarizer.testing import FAULTS, Faults, ScriptedServer, article_of

# marker (a made-up place name that only its article contains) -> fault mode
MARKERS = {"Arvenholt": "rate_limit", "Brisca": "server_error", "Cendrel": "hang", "Dovmark": "drop",
           "Elsgard": "malformed", "Fenwary": "schema", "Gorlan": "ungrounded", "Hestia": "slow"}
TRANSPORT = {"rate_limit", "server_error", "hang", "drop"}
VALIDATION = {"malformed", "schema"}
ENV = {"SUMMARIZER_BACKOFF_MAX": "0.3"}
PATHS = {"sync": (), "async": ("--concurrency", "4")}  # the CLI runs remote batches on asyncio when concurrent


def article(place: str) -> str:
    return (f"Talks in {place}\n\nThe Valmont government said it wanted peace in {place}. "
            f"Ostrava urged Valmont to withdraw its troops from {place}.\n")


def make_batch(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for marker, mode in MARKERS.items():
        (inp / f"{mode}.txt").write_text(article(marker))
    (inp / "healthy.txt").write_text(article("Quillon"))
    return inp


def run(inp, out, url, *extra):
    return subprocess.run([sys.executable, "-m", "summarizer.cli", "summarize", str(inp), "-o", str(out),
                           "-b", "openai", "-m", "scripted", "--base-url", url, "--no-cache", "--timeout", "1",
                           "--max-retries", "2", *extra],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **ENV})


def requests_of(server, marker):
    return [r for r in server.requests if marker in article_of(r)]


def check_written(out, inp):
    """Every written record validates, is grounded in its article and names no invented actor."""
    records = {}
    for path in out.glob("*.json"):
        rec = ArticleRecord.model_validate_json(path.read_text())
        text = (inp / f"{path.stem}.txt").read_text()
        assert rec.grounding_errors(text) == [], path.name
        assert "Atlantis" not in path.read_text()
        assert rec.provenance.attempts >= 1 and rec.provenance.usage.prompt_tokens > 0
        records[path.stem] = rec
    return records


def test_every_mode_is_known_to_the_server():
    assert set(MARKERS.values()) == set(FAULTS)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults({"x": "explode"})


@pytest.mark.parametrize("path", PATHS)
def test_transient_faults_are_recovered_and_recorded(tmp_path, path):
    inp, out = make_batch(tmp_path), tmp_path / "out"
    faults = Faults(MARKERS, times=2, hang=3.0, slow=0.6, retry_after=0.2)
    with ScriptedServer(faults) as srv:
        t0 = time.monotonic()
        r = run(inp, out, srv.url, *PATHS[path])
        elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{len(MARKERS) + 1} summarised, 0 up to date, 0 failed" in r.stderr
    assert (out / "errors.jsonl").read_text() == ""
    records = check_written(out, inp)
    assert len(records) == len(MARKERS) + 1
    for marker, mode in MARKERS.items():
        assert faults.fired[marker] == 2, mode  # each fault fired twice, then the endpoint recovered
        rec = records[mode]
        if mode in VALIDATION or mode == "ungrounded":
            assert rec.provenance.retries >= 2, mode  # two re-asks recorded in provenance
    assert records["slow"].provenance.latency_s >= 1.2  # two slow answers of 0.6 s
    assert elapsed < 120  # bounded: backoff is capped by SUMMARIZER_BACKOFF_MAX
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(MARKERS) + 1 and all(json.loads(x)["schema_version"] == 1 for x in lines)


@pytest.fixture(scope="module")
def persistent(tmp_path_factory):
    """The batch against persistent faults, run once per path: (input, output, CLI result, requests per marker)."""
    runs = {}

    def run_path(path):
        if path not in runs:
            tmp = tmp_path_factory.mktemp(f"persistent-{path}")
            inp, out = make_batch(tmp), tmp / "out"
            with ScriptedServer(Faults(MARKERS, times=None, hang=3.0, slow=0.6, retry_after=0.2)) as srv:
                r = run(inp, out, srv.url, *PATHS[path])
                runs[path] = inp, out, r, {m: len(requests_of(srv, m)) for m in MARKERS}
        return runs[path]
    return run_path


def error_lines(out):
    """errors.jsonl as dicts, each file reduced to its name."""
    lines = (out / "errors.jsonl").read_text().splitlines()
    return [{**e, "file": e["file"].rsplit("/", 1)[-1]} for e in map(json.loads, lines)]


@pytest.mark.parametrize("path", PATHS)
def test_persistent_faults_end_as_one_clean_error_each(persistent, path):
    inp, out, r, per_marker = persistent(path)
    assert r.returncode == 1
    errors = {e["file"]: e for e in error_lines(out)}
    failing = TRANSPORT | VALIDATION
    # ungrounded: the actor list is re-asked, then dropped item by item; the record may be empty but is grounded
    assert set(errors) <= {f"{m}.txt" for m in failing | {"ungrounded"}}
    assert {f"{m}.txt" for m in failing} <= set(errors)
    for mode in TRANSPORT:
        e = errors[f"{mode}.txt"]
        assert e["kind"] == "transport", e
        assert e["message"] and e["attempts"] >= 1
    for mode in VALIDATION:
        e = errors[f"{mode}.txt"]
        assert e["kind"] == "validation", e
        assert e["attempts"] == 3 and e["usage"]["prompt_tokens"] > 0  # 1 + --max-retries 2
    for marker, mode in MARKERS.items():
        if mode in TRANSPORT:
            assert per_marker[marker] == 5, (mode, per_marker[marker])  # 1 try + 4 transport retries, then stop
        elif mode in VALIDATION:
            assert per_marker[marker] == 3, (mode, per_marker[marker])
    for name in errors:
        assert name in r.stderr  # each failure is named on stderr too
    records = check_written(out, inp)
    assert {"healthy", "slow"} <= set(records)
    assert not set(records) & failing
    if "ungrounded" in records:
        assert records["ungrounded"].actors == [] and records["ungrounded"].provenance.dropped["actors"] >= 1


def test_both_paths_end_with_the_same_attempts_and_error_lines(persistent):
    (_, sync_out, _, sync_requests), (_, async_out, _, async_requests) = persistent("sync"), persistent("async")
    assert error_lines(sync_out) == error_lines(async_out)  # kinds, messages, attempts and usage, in input order
    assert sync_requests == async_requests
