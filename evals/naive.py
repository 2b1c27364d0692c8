"""The baseline to beat: one plain prompt for the whole record, no grounding, no re-ask.

Same backend and constrained decoding as the real pipeline, so the comparison isolates
the design (small focused calls, sentence pointers, actor enums, deterministic figures).
"""
from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel

from summarizer.backends import Backend
from summarizer.drafts import ExtractionContext
from summarizer.schema import ActorKind

PROMPT = """Read the news article and extract: the actors (people, states, organizations, groups) with the
words the article uses for them; the positions actors state; the demands actors make of others; and
every figure (number) the article states. Copy evidence quotes verbatim from the article.

Article:
{article}"""


class NEvidence(BaseModel):
    quote: str


class NActor(BaseModel):
    name: str
    kind: ActorKind
    role: Optional[str] = None
    country: Optional[str] = None
    mentions: list[str] = []


class NPosition(BaseModel):
    actor: str
    topic: str
    stance: str
    evidence: NEvidence


class NDemand(BaseModel):
    actor: str
    addressees: list[str] = []
    action: str
    evidence: NEvidence


class NFigure(BaseModel):
    value: float
    unit: str
    what: str
    qualifier: Literal["exact", "approximate", "at_least", "at_most"] = "exact"
    evidence: NEvidence


class NaiveRecord(BaseModel):
    """The whole article record in one answer."""

    summary: str
    actors: list[NActor]
    positions: list[NPosition]
    demands: list[NDemand]
    figures: list[NFigure]


def naive_extract(backend: Backend, text: str) -> dict:
    """One call; returns the record as a dict (possibly invalid: it is scored as such)."""
    t0 = time.perf_counter()
    ctx = ExtractionContext(text)
    rec, st = backend.structured([{"role": "user", "content": PROMPT.format(article=text)}], NaiveRecord, ctx,
                                 max_retries=0)
    d = rec.model_dump()
    for f in ("positions", "demands", "figures"):
        for it in d[f]:
            q = it["evidence"]["quote"]
            i = text.find(q) if q else -1
            it["evidence"] = {"quote": q, "start": i if i >= 0 else None, "end": i + len(q) if i >= 0 else None}
    d["provenance"] = {"backend": backend.name, "model": backend.model_id, "model_sha256": backend.model_sha256,
                       "prompt_version": "naive", "usage": {"prompt_tokens": st.prompt_tokens,
                                                            "completion_tokens": st.completion_tokens,
                                                            "model_calls": st.attempts},
                       "attempts": st.attempts, "latency_s": round(time.perf_counter() - t0, 3)}
    return d
