"""Reading an article: headline, date marker, body, trailer cut and numbered sentences.

All offsets index the raw article text exactly as received.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_DATE_MARKER = re.compile(r"\A\s*date (\d{4}-\d{2}-\d{2})\s")
# A line of underscores/dashes or a "Last News"-style block ends the article body.
_TRAILER = re.compile(r"^\s*(?:_{3,}.*|-{5,}\s*|Last News\s*|Related (?:News|Articles)\s*)$", re.M)
_ABBREV = {
    "mr", "mrs", "ms", "dr", "prof", "gen", "col", "lt", "sgt", "capt", "maj", "sen", "rep",
    "gov", "st", "jr", "sr", "no", "vs", "etc", "inc", "ltd", "co", "corp", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k",
    "u.n", "e.g", "i.e", "approx", "est", "fig", "mt", "ft",
}
# Sentence end: . ! ? optionally followed by closing quotes/brackets, then whitespace.
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")


@dataclass(frozen=True)
class Sentence:
    n: int
    start: int
    end: int
    text: str


_CODE = re.compile(r'^\s*(?:```|~~~|[{\[]\s*["{\[\]}]|</?[A-Za-z][\w-]*[^<>]*>\s*$)|"[\w ]+"\s*:\s*[\[{"\d]')


def looks_like_code(sentence: str) -> bool:
    """Whether a "sentence" is code or markup (a fence, JSON, a lone tag) rather than prose.

    Such lines state no figure, position or demand even when they carry numbers or quotes
    (a pasted JSON block, an injected fake answer), so the pipeline skips them.
    """
    return bool(_CODE.search(sentence))


@dataclass
class Article:
    """A parsed article; `text` is the raw input, offsets index it."""

    text: str
    headline: str | None
    published: str | None
    body_start: int
    body_end: int
    sentences: list[Sentence] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def numbered(self, sentences: list[Sentence] | None = None) -> str:
        """The body as numbered sentences, one per line: "[3] text"."""
        return "\n".join(f"[{s.n}] {s.text}" for s in (sentences or self.sentences))


def _split_block(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    for m in _END.finditer(text, start, end):
        cut = m.end()
        word = re.search(r"([\w.]+)[.!?]*[\"'”’)\]]*$", text[pos:cut])
        token = word.group(1).rstrip(".").lower() if word else ""
        if m.group(0).startswith(".") and (token in _ABBREV or re.fullmatch(r"[a-z]", token)):
            continue
        nxt = text[cut:end].lstrip()
        if nxt and not re.match(r"[\"'“‘(\[]?[A-Z0-9]", nxt):
            continue
        spans.append((pos, cut))
        pos = cut
    spans.append((pos, end))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def split_sentences(text: str, start: int = 0, end: int | None = None, first: int = 1) -> list[Sentence]:
    """Split text[start:end] into sentences at line breaks and sentence ends."""
    end = len(text) if end is None else end
    out: list[Sentence] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        ls, le = start + line.start(), start + line.end()
        for s, e in _split_block(text, ls, le):
            out.append(Sentence(first + len(out), s, e, text[s:e]))
    return out


def parse_article(text: str) -> Article:
    """Find the headline, the stated date and the body of a raw article, and number its sentences."""
    headline = published = None
    body_start = 0
    m = _DATE_MARKER.match(text)
    if m:
        published = m.group(1)
        body_start = m.end()
    else:
        first = re.match(r"\A[ \t]*([^\n]+?)[ \t]*\r?\n[ \t]*\r?\n", text)
        if first:
            line = first.group(1)
            if len(line.split()) <= 30 and not re.search(r"[.!?][\"'”’]?$", line):
                headline = line
                body_start = first.end()
    body_end = len(text)
    t = _TRAILER.search(text, body_start)
    if t and t.start() > body_start:
        body_end = t.start()
    sentences = split_sentences(text, body_start, body_end)
    return Article(text, headline, published, body_start, body_end, sentences)
