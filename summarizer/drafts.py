"""What the model fills in (drafts) and how drafts become public record items.

The model never copies quotes: it points at numbered sentences, and actor names in
statements are constrained to the actors already found (enums in the JSON schema, so a
grammar-constrained backend cannot produce anything else). Validators feed every
ungrounded item back to the model as a validation error (instructor re-ask); on the
last attempt they drop it instead and count it in ExtractionContext.dropped.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, ValidationInfo, create_model, model_validator

from .schema import Actor, ActorKind, Demand, Evidence, Position
from .text import Sentence


@dataclass
class ExtractionContext:
    """Per-call state shared with validators through pydantic's validation context."""

    article: str
    attempt: int = 0
    max_attempts: int = 1
    dropped: Counter = field(default_factory=Counter)

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


def _ctx(info: ValidationInfo) -> ExtractionContext | None:
    return (info.context or {}).get("extraction") if info.context else None


class ActorDraft(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    kind: ActorKind
    role: Optional[str] = None
    country: Optional[str] = None
    mentions: list[str] = Field(default_factory=list, max_length=12)


class ActorsDraft(BaseModel):
    """The actors of the article, each with the verbatim words the article uses for it."""

    actors: list[ActorDraft] = Field(default_factory=list, max_length=30)

    @model_validator(mode="after")
    def _grounded(self, info: ValidationInfo) -> "ActorsDraft":
        ctx = _ctx(info)
        if ctx is None:
            return self
        text = ctx.article
        problems, kept, seen = [], [], set()
        for a in self.actors:
            bad = [m for m in a.mentions if m not in text]
            if bad and not ctx.last_attempt:
                problems.append(f"actor {a.name!r}: mentions {bad} are not exact words of the article; "
                                f"copy each mention character for character from the article or leave it out")
                continue
            if bad:
                ctx.dropped["mentions"] += len(bad)
            a.mentions = list(dict.fromkeys(m for m in a.mentions if m in text))
            if not a.mentions and a.name in text:
                a.mentions = [a.name]
            if not a.mentions:
                if not ctx.last_attempt:
                    problems.append(f"actor {a.name!r} has no mention found in the article; give the exact words "
                                    f"the article uses for it, or leave the actor out")
                else:
                    ctx.dropped["actors"] += 1
                continue
            key = a.name.casefold()
            if key in seen:
                continue
            seen.add(key)
            kept.append(a)
        if problems:
            raise ValueError("; ".join(problems))
        self.actors = kept
        return self


def statements_model(sentence_numbers: list[int], names: list[str]) -> type[BaseModel]:
    """A draft model whose sentence numbers and actor names are enums of the allowed values."""
    S = Literal[tuple(sentence_numbers)] if sentence_numbers else int  # type: ignore[valid-type]
    N = Literal[tuple(names)] if names else str  # type: ignore[valid-type]
    allowed_s, allowed_n = set(sentence_numbers), set(names)

    PositionDraft = create_model("PositionDraft", s=(S, ...), actor=(N, ...),
                                 topic=(str, Field(max_length=120)), stance=(str, Field(max_length=240)))
    DemandDraft = create_model("DemandDraft", s=(S, ...), actor=(N, ...),
                               addressees=(list[N], Field(default_factory=list, max_length=8)),
                               action=(str, Field(max_length=240)))

    def _check(cls, data: Any, info: ValidationInfo):
        ctx = _ctx(info)
        if not isinstance(data, dict) or ctx is None:
            return data
        problems = []
        for key in ("demands", "positions"):
            items = data.get(key) or []
            if not isinstance(items, list):
                continue
            kept = []
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    continue
                errs = []
                if item.get("s") not in allowed_s:
                    errs.append(f"sentence number {item.get('s')!r} does not exist (use one of the [n] numbers)")
                if allowed_n and item.get("actor") not in allowed_n:
                    errs.append(f"actor {item.get('actor')!r} is not one of the actors {sorted(allowed_n)}")
                adds = item.get("addressees") or []
                bad_adds = [a for a in adds if allowed_n and a not in allowed_n] if isinstance(adds, list) else adds
                if bad_adds:
                    if ctx.last_attempt:
                        item = {**item, "addressees": [a for a in adds if a in allowed_n]}
                        ctx.dropped["addressees"] += len(bad_adds)
                    else:
                        errs.append(f"addressees {bad_adds} are not among the actors {sorted(allowed_n)}")
                if errs and not ctx.last_attempt:
                    problems.append(f"{key}[{i}]: " + "; ".join(errs))
                if errs and ctx.last_attempt:
                    ctx.dropped[key] += 1
                    continue
                kept.append(item)
            data = {**data, key: kept}
        if problems:
            raise ValueError("; ".join(problems))
        return data

    return create_model(
        "Statements",
        __doc__="Demands and positions stated in the article, each pointing at the sentence that states it.",
        demands=(list[DemandDraft], Field(default_factory=list, max_length=30)),
        positions=(list[PositionDraft], Field(default_factory=list, max_length=30)),
        __validators__={"_check": model_validator(mode="before")(_check)},
    )


def to_actors(draft: ActorsDraft) -> list[Actor]:
    """Public actors from a validated draft."""
    return [Actor(name=a.name.strip(), kind=a.kind, role=a.role or None, country=a.country or None,
                  mentions=a.mentions) for a in draft.actors]


def to_statements(draft: BaseModel, sentences: dict[int, Sentence]) -> tuple[list[Position], list[Demand]]:
    """Public positions and demands; evidence is the pointed sentence with its exact offsets."""
    positions, demands, seen = [], [], set()

    def ev(n: int) -> Evidence:
        s = sentences[n]
        return Evidence(quote=s.text, start=s.start, end=s.end)

    for d in draft.demands:
        key = ("d", d.s, d.actor, d.action.strip().casefold())
        if key in seen:
            continue
        seen.add(key)
        adds = [a for a in dict.fromkeys(d.addressees) if a != d.actor]
        demands.append(Demand(actor=d.actor, addressees=adds, action=d.action.strip(), evidence=ev(d.s)))
    for p in draft.positions:
        key = ("p", p.s, p.actor, p.stance.strip().casefold())
        if key in seen:
            continue
        seen.add(key)
        positions.append(Position(actor=p.actor, topic=p.topic.strip(), stance=p.stance.strip(), evidence=ev(p.s)))
    return positions, demands
