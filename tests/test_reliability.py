"""Bad input, faulty endpoints, interruption and concurrency, against real processes and a loopback server."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from summarizer import ExtractionError, Summarizer
from summarizer.bench import peak_rss_mb
from summarizer.testing import Faults, Reply, ScriptedServer, error_reply, heuristic_reply, tool_reply

ROOT = Path(__file__).resolve().parents[1]
GOOD = "Talks\n\nThe Valmont government said it wanted peace. Ostrava said the troops were on exercises.\n"


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "summarizer.cli", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def run_folder(inp, out, url, *extra, env=None):
    return cli("summarize", str(inp), "-o", str(out), "-b", "openai", "-m", "scripted", "--base-url", url, *extra,
               env=env)


def errors_of(out):
    return {Path(e["file"]).name: e for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}


def test_bad_inputs_fail_one_by_one_with_specific_messages(tmp_path):
    inp = tmp_path / "in"
    (inp / "nested" / "deeper").mkdir(parents=True)
    (inp / "good.txt").write_text(GOOD)
    (inp / "nested" / "deeper" / "also good.md").write_text(GOOD.replace("peace", "calm"))
    (inp / "non-ascii ünïcode.txt").write_text(GOOD.replace("peace", "a ceasefire"))
    (inp / "empty.txt").write_text("")
    (inp / "blank.txt").write_text(" \n\t\n")
    (inp / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (inp / "page.txt").write_text("<!DOCTYPE html><html><body><p>Valmont said no.</p></body></html>")
    (inp / "latin1.txt").write_bytes("Caf\xe9 talks\n\nThe minister said the caf\xe9 would reopen.\n".encode("cp1252"))
    (inp / "short.txt").write_text("Valmont said no.")
    (inp / "loop").symlink_to(inp, target_is_directory=True)       # a symlink loop
    (inp / "link.txt").symlink_to(inp / "good.txt")                # a symlinked file
    (inp / "..txt").write_text(GOOD)                               # hidden (dot) files are skipped, like .git
    (inp / "a..b.txt").write_text(GOOD)                            # odd names: dots, a leading dash, a newline
    (inp / "-o.txt").write_text(GOOD)
    (inp / "new\nline.txt").write_text(GOOD)
    outside = tmp_path / "elsewhere"                               # a symlink to a folder outside the input
    outside.mkdir()
    (outside / "far.txt").write_text(GOOD)
    (inp / "escape").symlink_to(outside, target_is_directory=True)
    def outside_files():  # everything but the input tree and the test's response cache
        return sorted(p for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] not in ("in", "responses"))

    before = outside_files()
    out = inp / "out"                                              # output inside the input folder
    with ScriptedServer() as srv:
        r = run_folder(inp, out, srv.url)
    assert r.returncode == 1
    errs = errors_of(out)
    assert set(errs) == {"empty.txt", "blank.txt", "binary.txt", "page.txt"}
    assert "empty or whitespace only" in errs["empty.txt"]["message"]
    assert "looks binary" in errs["binary.txt"]["message"]
    assert "HTML page" in errs["page.txt"]["message"]
    assert "fill or remove the file" in errs["empty.txt"]["message"]
    assert "extract the article text" in errs["page.txt"]["message"]
    for e in errs.values():
        assert e["kind"] == "input" and e["file"] in e["message"]  # names the file ...
        assert Path(e["file"]).name in r.stderr                   # ... on stderr too
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert done == ["-o.json", "a..b.json", "escape/far.json", "good.json", "latin1.json", "link.json",
                    "nested/deeper/also good.json", "new\nline.json", "non-ascii ünïcode.json", "short.json"]
    # nothing was written outside the output folder
    assert outside_files() == before
    latin = json.loads((out / "latin1.json").read_text())
    assert latin["headline"] == "Café talks"
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_input_that_is_a_single_file(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text(GOOD)
    with ScriptedServer() as srv:
        r = run_folder(f, tmp_path / "o", srv.url)
    assert r.returncode == 0 and (tmp_path / "o" / "one.json").exists()


def test_files_that_vanish_or_become_unreadable_mid_run(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(6):
        (inp / f"a{i}.txt").write_text(GOOD.replace("peace", f"peace {i}"))
    gone, swapped = inp / "a4.txt", inp / "a5.txt"

    def sabotage():  # once the first article is written, delete one pending file and replace another by a folder
        deadline = time.monotonic() + 60
        while not (out / "a0.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        gone.unlink()
        swapped.unlink()
        swapped.mkdir()

    import threading

    t = threading.Thread(target=sabotage)
    with ScriptedServer(Faults(latency=0.3)) as srv:  # slow enough that the listing is long done
        t.start()
        r = run_folder(inp, out, srv.url)
        t.join()
    assert r.returncode == 1
    assert "4 summarised, 0 up to date, 2 failed" in r.stderr
    errs = errors_of(out)
    assert set(errs) == {"a4.txt", "a5.txt"}
    for e in errs.values():
        assert e["kind"] == "io" and "check that the file still exists and is readable" in e["message"]
        assert e["file"] in r.stderr
    assert sorted(p.name for p in out.glob("*.json")) == [f"a{i}.json" for i in range(4)]
    assert len((out / "records.jsonl").read_text().splitlines()) == 4


def test_endpoint_that_keeps_failing_ends_as_one_clean_error_line_and_others_complete(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        (inp / f"a{i}.txt").write_text(GOOD.replace("peace", f"peace {i}"))
    (inp / "bad.txt").write_text(GOOD.replace("peace", "POISON"))

    def script(request):
        if "POISON" in json.dumps(request):
            return error_reply(503, "backend overloaded")
        return heuristic_reply(request)

    with ScriptedServer(script) as srv:
        r = run_folder(inp, tmp_path / "out", srv.url, env={**os.environ, "SUMMARIZER_BACKOFF_MAX": "0.05"})
        poison = sum("POISON" in json.dumps(q) for q in srv.requests)
    assert r.returncode == 1
    errs = errors_of(tmp_path / "out")
    assert list(errs) == ["bad.txt"] and errs["bad.txt"]["kind"] == "transport" and "503" in errs["bad.txt"]["message"]
    assert poison == 5  # bounded: 1 + 4 transport retries, then the article fails
    assert len(list((tmp_path / "out").glob("a*.json"))) == 3


def test_hang_past_timeout_and_dropped_connection_are_retried():
    script = [Reply(delay=3.0, body={}), Reply(drop=True, body={"x": "y" * 1000}),
              tool_reply({"actors": []})]
    with ScriptedServer(script) as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, timeout=1.0, backoff_max=0.05, cache=False)
        rec = s.summarize(GOOD)
        assert s.backend.transport_attempts == 3
    assert rec.actors == []


def test_malformed_and_schema_violating_answers_are_reasked_then_fail_cleanly():
    with ScriptedServer([tool_reply("{not json"), tool_reply({"actors": [{"name": 3}]}),
                         tool_reply({"actors": "none"})]) as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, max_retries=2, cache=False)
        with pytest.raises(ExtractionError) as info:
            s.summarize(GOOD)
    assert info.value.kind == "validation" and info.value.attempts == 3
    assert info.value.usage["prompt_tokens"] == 300 and info.value.last_raw == '{"actors": "none"}'


def test_article_longer_than_the_context_is_split_and_merged():
    body = " ".join(f"Valmont said point {i} was agreed." for i in range(400))
    text = "Long talks\n\n" + body + "\n"
    with ScriptedServer() as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, context_window=4096, max_tokens=256, cache=False)
        rec = s.summarize(text)
    assert rec.provenance.chunks > 1
    assert [a.name for a in rec.actors].count("Valmont") == 1          # merged across chunks
    starts = [p.evidence.start for p in rec.positions]
    assert len(starts) == len(set(starts)) == 400                       # every sentence once, overlap deduplicated
    assert rec.grounding_errors(text) == []


def test_concurrent_run_equals_sequential(tmp_path):
    inp = tmp_path / "in"
    _articles(inp, 12)
    with ScriptedServer() as srv:
        assert run_folder(inp, tmp_path / "seq", srv.url).returncode == 0
        assert run_folder(inp, tmp_path / "par", srv.url, "--concurrency", "4", "--no-cache").returncode == 0

    def strip(p):
        d = json.loads(p.read_text())
        for k in ("latency_s", "created_at", "cached"):
            d["provenance"].pop(k)
        return d
    for p in sorted((tmp_path / "seq").glob("a*.json")):
        assert strip(p) == strip(tmp_path / "par" / p.name)
    seq = (tmp_path / "seq" / "records.jsonl").read_text().splitlines()
    par = (tmp_path / "par" / "records.jsonl").read_text().splitlines()
    assert len(seq) == len(par) == 12
    assert [json.loads(x)["provenance"]["source"] for x in seq] == [json.loads(x)["provenance"]["source"] for x in par]


def _start_and_wait(inp, out, url, n_outputs, *extra, **popen):
    """Start the CLI on inp and return it once n_outputs records are written."""
    proc = subprocess.Popen([sys.executable, "-m", "summarizer.cli", "summarize", str(inp), "-o", str(out),
                             "-b", "openai", "-m", "scripted", "--base-url", url, *extra], **popen)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("a*.json"))) < n_outputs:
        time.sleep(0.05)
    return proc


def _articles(inp, n):
    inp.mkdir()
    for i in range(n):
        (inp / f"a{i:02d}.txt").write_text(GOOD.replace("peace", f"peace number {i}"))


def _slow_server():
    def script(request):
        time.sleep(0.15)
        return heuristic_reply(request)
    return ScriptedServer(script)


def test_sigkill_mid_batch_then_rerun_completes_without_recomputing(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _articles(inp, 20)
    with _slow_server() as srv:
        proc = _start_and_wait(inp, out, srv.url, 5, "--no-cache", stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {p.name for p in out.glob("a*.json")}
        assert 5 <= len(finished) < 20
        for p in out.glob("a*.json"):
            json.loads(p.read_text())  # every output present is complete
        before = len(srv.requests)
        r = run_folder(inp, out, srv.url)
        recomputed = len(srv.requests) - before
    assert r.returncode == 0, r.stderr
    assert f"{20 - len(finished)} summarised, {len(finished)} up to date" in r.stderr
    assert recomputed == (20 - len(finished)) * 3
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 20 and len({json.loads(x)["provenance"]["source"] for x in lines}) == 20
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("extra", [(), ("--concurrency", "4")], ids=["sync", "async"])
def test_sigint_stops_cleanly_with_a_summary(tmp_path, extra):
    inp, out = tmp_path / "in", tmp_path / "out"
    _articles(inp, 30)
    with _slow_server() as srv:
        proc = _start_and_wait(inp, out, srv.url, 3, *extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "rerun the same command to resume" in err
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(list(out.glob("a*.json")))


@pytest.mark.slow
def test_ten_thousand_small_files_with_bounded_memory(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(10_000):
        d = inp / f"d{i // 1000}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"a{i:05d}.txt").write_text(f"Note {i}\n\nOfficials in Valmont said case {i} was closed.\n")
    with ScriptedServer() as srv, open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "summarizer.cli", "summarize", str(inp), "-o", str(out),
                                 "-b", "openai", "-m", "scripted", "--base-url", srv.url, "--concurrency", "8",
                                 "--no-cache"], stdout=subprocess.DEVNULL, stderr=err)
        # the CLI's own high-water mark, polled from /proc (getrusage/wait4 maxrss would include the
        # memory of this pytest process at fork time, e.g. a loaded model from an earlier test)
        peak_mb = 0.0
        while proc.poll() is None:
            peak_mb = max(peak_mb, peak_rss_mb(proc.pid))
            time.sleep(0.1)
        err.seek(0)
        stderr = err.read()
    print(f"\n10,000-file batch: peak RSS of the CLI {peak_mb:.0f} MB")
    assert proc.returncode == 0, stderr[-2000:]
    assert "10000 summarised, 0 up to date, 0 failed" in stderr
    assert "10000/10000" in stderr  # the progress bar ends exactly at the total
    assert len((out / "records.jsonl").read_text().splitlines()) == 10_000
    assert peak_mb < 1024
