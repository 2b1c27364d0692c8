import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def seed_text() -> str:
    return (FIXTURES / "seeds" / "000_52a82361d015938c.txt").read_text(encoding="utf-8")


SHORT = ("Peace talks\n\nThe Valmont government urged Ostrava to withdraw its troops from the border. "
         "Ostrava said the troops were on exercises.\nAbout 300 people fled the area, officials said.\n")


@pytest.fixture
def short_text() -> str:
    return SHORT
