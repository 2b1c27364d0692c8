"""The public record: ArticleRecord schema v1 (see docs/record.md) plus provenance.

A gold fixture and a predicted record share this shape, so any record can be
scored against any other.
"""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

ActorKind = Literal["person", "state", "organization", "armed_group", "group", "other"]
Qualifier = Literal["exact", "approximate", "at_least", "at_most"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Evidence(BaseModel):
    """A verbatim span of the article; start/end index the raw article text."""

    model_config = ConfigDict(extra="forbid")
    quote: str = Field(min_length=1)
    start: Optional[int] = Field(default=None, ge=0)
    end: Optional[int] = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _offsets(self) -> "Evidence":
        if (self.start is None) != (self.end is None):
            raise ValueError("evidence start and end must both be set or both be null")
        if self.start is not None and self.end - self.start != len(self.quote):
            raise ValueError(
                f"evidence offsets {self.start}:{self.end} span {self.end - self.start} "
                f"characters but the quote has {len(self.quote)}"
            )
        return self


class Actor(BaseModel):
    """A person, state, organisation, armed group or group, with its verbatim mentions."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    kind: ActorKind
    role: Optional[str] = None
    country: Optional[str] = None
    mentions: list[str] = Field(default_factory=list)


class Position(BaseModel):
    """A view an actor states (support, opposition, assessment, claim, denial)."""

    model_config = ConfigDict(extra="forbid")
    actor: str
    topic: str
    stance: str
    evidence: Evidence


class Demand(BaseModel):
    """A call by an actor on other actors (the addressees) to do or stop doing something."""

    model_config = ConfigDict(extra="forbid")
    actor: str
    addressees: list[str] = Field(default_factory=list)
    action: str
    evidence: Evidence


class Figure(BaseModel):
    """A number the article states, with its unit and hedge qualifier."""

    model_config = ConfigDict(extra="forbid")
    value: float
    unit: str
    what: str
    qualifier: Qualifier = "exact"
    evidence: Evidence


class Usage(BaseModel):
    """Token usage and model calls for one article."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0

    def add(self, prompt: int = 0, completion: int = 0, calls: int = 1) -> None:
        """Accumulate the token counts of one model call."""
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.model_calls += calls


class Provenance(BaseModel):
    """How a record was produced; absent from gold fixtures."""

    backend: str
    model: str
    model_sha256: Optional[str] = None
    prompt_version: str
    decoding: dict = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 0
    retries: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    latency_s: float = 0.0
    article_sha256: str = ""
    chunks: int = 1
    cached: bool = False
    created_at: str = ""
    summarizer_version: str = ""
    run_key: str = ""
    source: Optional[str] = None


class ArticleRecord(BaseModel):
    """One article's actors, positions, demands and figures, each with evidence."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    headline: Optional[str] = None
    published: Optional[str] = None
    summary: str = ""
    actors: list[Actor] = Field(default_factory=list)
    positions: list[Position] = Field(default_factory=list)
    demands: list[Demand] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    provenance: Optional[Provenance] = None

    @model_validator(mode="after")
    def _references(self) -> "ArticleRecord":
        if self.published is not None and not _DATE.match(self.published):
            raise ValueError(f"published must be YYYY-MM-DD, got {self.published!r}")
        names = {a.name for a in self.actors}
        if len(names) != len(self.actors):
            raise ValueError("actor names must be unique")
        for field in ("positions", "demands"):
            for i, item in enumerate(getattr(self, field)):
                if item.actor not in names:
                    raise ValueError(f"{field}[{i}].actor {item.actor!r} is not an actor of the record")
                for a in getattr(item, "addressees", []):
                    if a not in names:
                        raise ValueError(f"{field}[{i}] addressee {a!r} is not an actor of the record")
        return self

    def evidence_items(self):
        """Yield (field, index, Evidence) for every evidenced item."""
        for field in ("positions", "demands", "figures"):
            for i, item in enumerate(getattr(self, field)):
                yield field, i, item.evidence

    def grounding_errors(self, article: str, require_offsets: bool = True) -> list[str]:
        """Problems with quotes, offsets and mentions against the raw article text."""
        errors = []
        for field, i, ev in self.evidence_items():
            if ev.start is None:
                if require_offsets:
                    errors.append(f"{field}[{i}]: evidence has no offsets")
                if ev.quote not in article:
                    errors.append(f"{field}[{i}]: quote not in article: {ev.quote!r}")
            elif article[ev.start:ev.end] != ev.quote:
                errors.append(f"{field}[{i}]: article[{ev.start}:{ev.end}] != quote {ev.quote!r}")
        for a in self.actors:
            for m in a.mentions:
                if m not in article:
                    errors.append(f"actor {a.name!r}: mention not in article: {m!r}")
        return errors
