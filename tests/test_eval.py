"""The eval command end to end (against the scripted loopback server), reports, gate and HTML."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from summarizer.evals.data import fixtures_dataset, report_dataset
from summarizer.evals.runner import check_thresholds, load_fixtures
from summarizer.testing import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "summarizer.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=600, cwd=ROOT)


@pytest.fixture
def small_fixtures(tmp_path):
    d = tmp_path / "fx"
    for stem in ("bbc/politics-368", "seeds/001_dbf8b27b55cc989a"):
        for suffix in (".txt", ".json"):
            target = d / (stem + suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / "fixtures" / (stem + suffix), target)
    return d


def test_eval_prints_table_and_writes_reports(tmp_path, small_fixtures):
    with ScriptedServer() as srv:
        args = ["eval", "--fixtures", str(small_fixtures), "-b", "openai", "-m", "scripted",
                "--base-url", srv.url, "--out", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
                "--export", str(tmp_path / "rows")]
        r = cli(*args)
    assert r.returncode == 0, r.stderr
    for word in ("actors", "positions", "demands", "figures", "overall F1", "valid 1.000", "grounded 1.000"):
        assert word in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 <= report["overall_f1"] <= 1
    assert [a["id"] for a in report["articles"]] == ["bbc/politics-368", "seeds/001_dbf8b27b55cc989a"]
    assert report["provenance"]["prompt_version"] and report["provenance"]["git_commit"]
    assert report["articles"][0]["predicted"]["provenance"]["backend"] == "openai"
    # figures are deterministic, so the scripted model still finds real figures of politics-368
    assert report["articles"][0]["scores"]["figures"]["tp"] > 0
    rows = report_dataset(report)
    assert rows.num_rows == 2 and "overall_f1" in rows.column_names
    assert (tmp_path / "rows.parquet").exists() and len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2

    # baseline comparison against itself: zero deltas, nothing worse
    with ScriptedServer() as srv:
        r = cli("eval", "--fixtures", str(small_fixtures), "-b", "openai", "-m", "scripted", "--base-url", srv.url,
                "--baseline", str(tmp_path / "r.json"))
    assert r.returncode == 0 and "+0.000" in r.stdout and "worse:" not in r.stdout


def test_gate_fails_when_a_threshold_is_above_the_score(tmp_path, small_fixtures):
    report_path = tmp_path / "r.json"
    with ScriptedServer() as srv:
        base = ["eval", "--fixtures", str(small_fixtures), "-b", "openai", "-m", "scripted", "--base-url", srv.url]
        assert cli(*base, "--out", str(report_path)).returncode == 0
        f1 = json.loads(report_path.read_text())["overall_f1"]
        ok, high = tmp_path / "ok.toml", tmp_path / "high.toml"
        ok.write_text(f"overall_f1 = {max(f1 - 0.01, 0):.4f}\nvalid_rate = 1.0\n")
        high.write_text(f"overall_f1 = {f1 + 0.01:.4f}\n[field_f1]\nfigures = 1.01\n")
        r_ok = cli(*base, "--check", str(ok))
        r_high = cli(*base, "--check", str(high))
    assert r_ok.returncode == 0, r_ok.stderr
    assert r_high.returncode == 1
    assert "below threshold: overall_f1" in r_high.stderr and "figures F1" in r_high.stderr


def test_check_thresholds_unit():
    report = {"overall_f1": 0.5, "aggregate": {"overall_f1": 0.5, "valid_rate": 1.0, "grounded_rate": 0.9,
                                              "actors": {"f1": 0.6}, "figures": {"f1": 0.8}}}
    assert check_thresholds(report, {"overall_f1": 0.5, "valid_rate": 1.0}) == []
    fails = check_thresholds(report, {"grounded_rate": 1.0, "field_f1": {"actors": 0.7}})
    assert fails == ["grounded_rate 0.9000 < threshold 1.0000", "actors F1 0.6000 < threshold 0.7000"]


def test_fixtures_load_as_a_dataset():
    ds = fixtures_dataset(ROOT / "fixtures")
    assert ds.num_rows == len(load_fixtures(ROOT / "fixtures")) >= 23
    row = ds[0]
    assert set(ds.column_names) >= {"id", "text", "gold"}
    assert json.loads(row["gold"])["actors"]


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_headless_chromium(tmp_path, small_fixtures):
    browser = _chromium()
    if browser is None:
        if os.environ.get("SUMMARIZER_CI"):
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed")
    with ScriptedServer() as srv:
        r = cli("eval", "--fixtures", str(small_fixtures), "-b", "openai", "-m", "scripted", "--base-url", srv.url,
                "--html", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (tmp_path / "r.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "overall F1" in dom
    assert dom.count("class=\"article-report\"") == 2
    assert "Act on detention ruling, UK urged" in dom   # the article text is shown
    assert 'class="g"' in dom and 'class="p' in dom or 'class="g p"' in dom  # gold and predicted highlights
    assert "Charles Clarke" in dom                       # a gold actor in the side-by-side tables
