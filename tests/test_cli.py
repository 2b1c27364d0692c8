"""The CLI as a user runs it: a real subprocess against a real loopback server."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from summarizer.testing import ScriptedServer

ARTICLES = {
    "a.txt": "Talks\n\nThe Valmont government said it wanted peace. Ostrava said the troops were on exercises.\n",
    "b.md": "Border\n\nOstrava said about 300 people fled. Valmont said nothing changed.\n",
    "sub/c.txt": "Trade\n\nMinister Karel Dvorak said tariffs would rise by 20%.\n",
    "empty.txt": "   \n\n",
    "binary.txt": b"\x00\x01\x02GGUF\x00\x00",
    "notes.csv": "ignored,file\n",
}


def make_folder(root: Path) -> Path:
    inp = root / "in"
    for name, content in ARTICLES.items():
        p = inp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return inp


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "summarizer.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def test_folder_run_resume_and_failures(tmp_path, server):
    inp, out = make_folder(tmp_path), tmp_path / "out"
    args = ["summarize", str(inp), "-o", str(out), "--backend", "openai", "--model", "scripted",
            "--base-url", server.url, "--api-key", "x"]
    r = cli(*args)
    assert r.returncode == 1, r.stderr
    assert "3 summarised, 0 up to date, 2 failed" in r.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == ["a.json", "b.json", "sub/c.json"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {(Path(e["file"]).name, e["kind"]) for e in errors} == {("empty.txt", "input"), ("binary.txt", "input")}
    assert any("empty or whitespace" in e["message"] for e in errors)
    assert any("looks binary" in e["message"] for e in errors)
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for p in out.rglob("*.json"):
        rec = json.loads(p.read_text())
        text = (inp / rec["provenance"]["source"]).read_text()
        for field in ("positions", "demands", "figures"):
            for item in rec[field]:
                ev = item["evidence"]
                assert text[ev["start"]:ev["end"]] == ev["quote"]
    calls = len(server.requests)
    assert calls == 8  # per article: one actors call + one call per candidate sentence

    # rerun: nothing recomputed
    r = cli(*args)
    assert "0 summarised, 3 up to date, 2 failed" in r.stderr
    assert len(server.requests) == calls

    # one article changes: only it is recomputed; --no-cache recomputes all
    (inp / "a.txt").write_text(ARTICLES["a.txt"] + "Valmont said talks would go on.\n")
    r = cli(*args)
    assert "1 summarised, 2 up to date, 2 failed" in r.stderr
    assert len(server.requests) == calls + 4
    r = cli(*args, "--no-cache")
    assert "3 summarised, 0 up to date, 2 failed" in r.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 3


def test_all_good_exits_zero_and_show_prints_the_record(tmp_path, server):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.txt").write_text(ARTICLES["a.txt"])
    out = tmp_path / "out"
    r = cli("summarize", str(inp), "-o", str(out), "-b", "openai", "-m", "scripted", "--base-url", server.url)
    assert r.returncode == 0, r.stderr
    r = cli("show", str(out / "a.json"), env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert "Actors" in r.stdout and "Valmont" in r.stdout and "Positions" in r.stdout
    assert "Ostrava said the troops were on exercises." in r.stdout


def test_single_file_input_and_missing_input(tmp_path, server):
    f = tmp_path / "one.txt"
    f.write_text(ARTICLES["a.txt"])
    r = cli("summarize", str(f), "-o", str(tmp_path / "o"), "-b", "openai", "-m", "s", "--base-url", server.url)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "one.json").exists()
    r = cli("summarize", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "input not found" in r.stderr


def test_show_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"actors": [{"name": 1}]}')
    r = cli("show", str(bad))
    assert r.returncode == 2 and "not a readable record" in r.stderr
