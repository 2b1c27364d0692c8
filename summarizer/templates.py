"""Prompt templates, kept as files in prompts/ and loaded and validated at start.

The prompt version recorded in provenance is a hash of every prompt file's content.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

FILES = ("system.txt", "actors.txt", "statements.txt", "example_article.txt",
         "example_actors.json", "example_statements.json")
_DELIMITER = re.compile(r"<\s*(/?)\s*article\s*>", re.IGNORECASE)
_PLACEHOLDERS = {"system.txt": {"article", "example_article", "example_actors", "example_statements"},
                 "statements.txt": {"sentence"}, "actors.txt": set()}


class PromptError(ValueError):
    """A prompt file is missing or malformed."""


@dataclass(frozen=True)
class Prompts:
    system: Template
    actors: str
    statements: Template
    example_article: str
    example_actors: str
    example_statements: str
    version: str

    def system_for(self, numbered_article: str) -> str:
        """The system message: instructions, the few-shot example and the numbered article.

        The article is data between <article> tags; a tag inside the article itself is defanged
        ("</article>" becomes "[/article]") so the text cannot close the data block early.
        """
        return self.system.substitute(article=defang(numbered_article), example_article=self.example_article,
                                      example_actors=self.example_actors,
                                      example_statements=self.example_statements)

    def opening(self) -> str:
        """The system message's text before the article: the same for every article."""
        mark = "\x00article\x00"
        return self.system_for(mark).split(mark)[0]


def defang(text: str) -> str:
    """Neutralise <article>/</article> delimiters appearing inside article text."""
    return _DELIMITER.sub(lambda m: f"[{m.group(1)}article]", text)


def load_prompts(directory: str | Path | None = None) -> Prompts:
    """Load and validate the prompt files from a folder (default: the packaged prompts/)."""
    base = Path(directory) if directory else Path(str(resources.files("summarizer.prompts")))
    texts = {}
    for name in FILES:
        p = base / name
        if not p.is_file():
            raise PromptError(f"prompt file missing: {p}")
        texts[name] = p.read_text(encoding="utf-8").strip()
    for name, needed in _PLACEHOLDERS.items():
        found = {m[1] or m[2] for m in Template.pattern.findall(texts[name]) if m[1] or m[2]}
        if found != needed:
            raise PromptError(f"{name}: placeholders {sorted(found)} but expected {sorted(needed)}")
    parsed = {}
    for name in ("example_actors.json", "example_statements.json"):
        try:
            parsed[name] = json.loads(texts[name])
        except json.JSONDecodeError as e:
            raise PromptError(f"{name} is not valid JSON: {e}") from e
    if not isinstance(parsed["example_statements.json"], dict):
        raise PromptError("example_statements.json must map each example sentence number to its answer")
    # the example's statement answers are shown one per line, as the model answers them one per call
    statements = "\n".join(f"{k} {json.dumps(v, ensure_ascii=False)}" for k, v in parsed["example_statements.json"].items())
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + texts[name].encode("utf-8") + b"\0")
    return Prompts(Template(texts["system.txt"]), texts["actors.txt"], Template(texts["statements.txt"]),
                   texts["example_article.txt"], texts["example_actors.json"],
                   statements, h.hexdigest()[:16])
