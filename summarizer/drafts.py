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


def _verbatim(mention: str, text: str) -> str | None:
    """The mention as the article spells it: exact, or the article's own casing of it."""
    mention = mention.strip()
    if not mention:
        return None
    if mention in text:
        return mention
    i = text.casefold().find(mention.casefold())
    if i >= 0 and len(text.casefold()) == len(text):
        return text[i:i + len(mention)]
    return None


class ActorDraft(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    kind: ActorKind
    role: Optional[str] = None
    country: Optional[str] = None
    mentions: list[str] = Field(default_factory=list, max_length=6)


class ActorsDraft(BaseModel):
    """The actors of the article, each with the verbatim words the article uses for it."""

    actors: list[ActorDraft] = Field(default_factory=list, max_length=24)

    @model_validator(mode="after")
    def _grounded(self, info: ValidationInfo) -> "ActorsDraft":
        ctx = _ctx(info)
        if ctx is None:
            return self
        text = ctx.article
        problems, kept, seen = [], [], set()
        for a in self.actors:
            good = list(dict.fromkeys(filter(None, (_verbatim(m, text) for m in a.mentions))))
            if not good and a.name in text:
                good = [a.name]
            if not good:
                # nothing locates this actor in the text: re-ask, and drop it on the last attempt
                if not ctx.last_attempt:
                    problems.append(f"actor {a.name!r}: none of its mentions {a.mentions} are exact words of "
                                    f"the article; copy the words the article uses for it, or leave it out")
                else:
                    ctx.dropped["actors"] += 1
                continue
            # the actor is grounded; its mentions that are not verbatim are dropped and counted
            if len(good) < len(set(a.mentions)):
                ctx.dropped["mentions"] += len(set(a.mentions)) - len(good)
            a.mentions = good
            key = a.name.casefold()
            if key in seen:
                continue
            seen.add(key)
            kept.append(a)
        if problems:
            raise ValueError("; ".join(problems))
        self.actors = kept
        return self


def sentence_model(names: list[str]) -> type[BaseModel]:
    """Draft model for one sentence: its demands/positions, holders and addressees as enums of `names`."""
    N = Literal[tuple(names)] if names else str  # type: ignore[valid-type]
    allowed = set(names)
    Item = create_model(
        "Item",
        type=(Literal["demand", "position"], ...),
        actor=(N, ...),
        addressees=(list[N], Field(default_factory=list, max_length=6)),
        topic=(str, Field(max_length=80)),
        text=(str, Field(max_length=200)),
    )

    def _check(cls, data: Any, info: ValidationInfo):
        ctx = _ctx(info)
        if not isinstance(data, dict) or ctx is None or not allowed:
            return data
        items = data.get("items")
        if not isinstance(items, list):
            return data
        problems, kept = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                kept.append(item)
                continue
            errs = []
            if item.get("actor") not in allowed:
                errs.append(f"actor {item.get('actor')!r} is not one of the actors {sorted(allowed)}")
            adds = item.get("addressees") or []
            bad = [a for a in adds if a not in allowed] if isinstance(adds, list) else []
            if bad:
                if ctx.last_attempt:
                    item = {**item, "addressees": [a for a in adds if a in allowed]}
                    ctx.dropped["addressees"] += len(bad)
                else:
                    errs.append(f"addressees {bad} are not among the actors {sorted(allowed)}")
            if errs and not ctx.last_attempt:
                problems.append(f"items[{i}]: " + "; ".join(errs))
            elif errs:
                ctx.dropped[(item.get("type") or "item") + "s"] += 1
                continue
            kept.append(item)
        if problems:
            raise ValueError("; ".join(problems))
        return {**data, "items": kept}

    return create_model(
        "Statements",
        __doc__="The demands and positions the given sentence states (often none or one).",
        items=(list[Item], Field(default_factory=list, max_length=3)),
        __validators__={"_check": model_validator(mode="before")(_check)},
    )


def to_actors(draft: ActorsDraft) -> list[Actor]:
    """Public actors from a validated draft."""
    return [Actor(name=a.name.strip(), kind=a.kind, role=a.role or None, country=a.country or None,
                  mentions=a.mentions) for a in draft.actors]


def to_statements(draft: BaseModel, sentence: Sentence) -> tuple[list[Position], list[Demand]]:
    """Public positions and demands of one sentence; evidence is the sentence with its exact offsets."""
    positions, demands = [], []
    ev = Evidence(quote=sentence.text, start=sentence.start, end=sentence.end)
    for it in draft.items:
        text = it.text.strip() or sentence.text[:120]
        if it.type == "demand":
            adds = [a for a in dict.fromkeys(it.addressees) if a != it.actor]
            demands.append(Demand(actor=it.actor, addressees=adds, action=text, evidence=ev))
        else:
            positions.append(Position(actor=it.actor, topic=it.topic.strip() or "statement", stance=text,
                                      evidence=ev))
    return positions, demands
