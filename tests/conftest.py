import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_response_cache(tmp_path, monkeypatch):
    """Each test gets its own response cache and KV-state folder; the assembled model stays in the shared cache."""
    monkeypatch.setenv("SUMMARIZER_RESPONSE_CACHE", str(tmp_path / "responses"))
    monkeypatch.setenv("SUMMARIZER_KV_DIR", str(tmp_path / "kv"))


@pytest.fixture
def seed_text() -> str:
    return (FIXTURES / "seeds" / "000_52a82361d015938c.txt").read_text(encoding="utf-8")


SHORT = ("Peace talks\n\nThe Valmont government urged Ostrava to withdraw its troops from the border. "
         "Ostrava said the troops were on exercises.\nAbout 300 people fled the area, officials said.\n")


@pytest.fixture
def short_text() -> str:
    return SHORT
