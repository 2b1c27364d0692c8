"""What the model fills in (drafts) and how drafts become public record items.

The model never copies quotes: it points at numbered sentences, and actor names in
statements are constrained to the actors already found (enums in the JSON schema, so a
grammar-constrained backend cannot produce anything else). Validators feed every
ungrounded item back to the model as a validation error (instructor re-ask); on the
last attempt they drop it instead and count it in ExtractionContext.dropped.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from .schema import Actor, ActorKind, Demand, Evidence, Position
from .text import Sentence


@dataclass
class ExtractionContext:
    """Per-call state shared with validators (see `current_extraction`)."""

    article: str
    attempt: int = 0
    max_attempts: int = 1
    dropped: Counter = field(default_factory=Counter)
    fresh: int = 0  # responses the model made (not read from the response cache)

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


# The ExtractionContext of the model call running in this thread (or task), set by
# Backend.structured. A context variable rather than instructor's `context=`, which would
# also compile every message as a Jinja template on every call.
current_extraction: ContextVar[ExtractionContext | None] = ContextVar("current_extraction", default=None)


def _ctx(info: ValidationInfo) -> ExtractionContext | None:
    if info.context:  # an explicit pydantic validation context wins
        return info.context.get("extraction")
    return current_extraction.get()


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


_CAPITALS = {
    "Russia": ["Moscow", "the Kremlin", "Kremlin"], "Armenia": ["Yerevan"], "Azerbaijan": ["Baku"],
    "United States": ["Washington", "the White House"], "France": ["Paris", "the Elysee", "the Élysée"],
    "United Kingdom": ["London", "Downing Street"], "Britain": ["London", "Downing Street"],
    "China": ["Beijing"], "Ukraine": ["Kiev", "Kyiv"], "Germany": ["Berlin"], "Iran": ["Tehran"],
    "Turkey": ["Ankara"], "Israel": ["Jerusalem"], "Japan": ["Tokyo"], "European Union": ["Brussels"],
    "Iraq": ["Baghdad"], "Syria": ["Damascus"], "Georgia": ["Tbilisi"], "Italy": ["Rome"], "Spain": ["Madrid"],
}
_TITLE = (r"(?:Minister|President|Secretary|Chancellor|Spokes(?:man|woman|person)|Ambassador|Commissioner|"
          r"Chairman|Chairwoman|Director|Leader|Premier|Governor|Mayor|Envoy|General|Chief|Head|Speaker|"
          r"Attorney General|MP|Senator|Official|Adviser|Advisor|Lord|Judge|Prosecutor|Editor|Economist)")


class ActorDraft(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    kind: ActorKind
    country: Optional[str] = Field(default=None, max_length=40)
    mention: Optional[str] = Field(default=None, max_length=60)
    # filled by the pipeline from the article text, not by the model
    role: SkipJsonSchema[Optional[str]] = None
    mentions: SkipJsonSchema[list[str]] = Field(default_factory=list)


def _surname(name: str) -> str | None:
    parts = [p for p in re.split(r"\s+", name.strip()) if p not in ("Mr", "Mrs", "Ms", "Dr", "Sir")]
    return parts[-1] if len(parts) >= 1 and len(parts[-1]) > 2 and parts[-1][0].isupper() else None


def expand_mentions(a: "ActorDraft", text: str) -> list[str]:
    """The verbatim forms the article uses for an actor: its name and the model's mention (casing
    repaired), a person's surname and "Mr X" forms, a state's capital or seat of government."""
    forms = [_verbatim(m, text) for m in (a.name, a.mention) if m]
    if a.kind == "person" and not re.search(r"\bof\b", a.name):
        sur = _surname(a.name)
        if sur and re.search(rf"\b{re.escape(sur)}\b", text):
            forms.append(sur)
            for t in ("Mr", "Mrs", "Ms", "Dr"):
                if f"{t} {sur}" in text:
                    forms.append(f"{t} {sur}")
    if a.kind == "state":
        for m in _CAPITALS.get(a.name, []):
            if re.search(rf"\b{re.escape(m)}\b", text):
                forms.append(m)
    return list(dict.fromkeys(f for f in forms if f))


def find_role(a: "ActorDraft", text: str) -> str | None:
    """A person's title as printed before their name ("Foreign Minister Sergei Lavrov")."""
    if a.kind != "person":
        return None
    for form in (a.name, a.mention):
        if not form:
            continue
        m = re.search(rf"((?:[A-Z][\w'-]*\s+){{0,3}}{_TITLE})\s+{re.escape(form)}", text)
        if m:
            words = m.group(1).split()
            if len(words) > 1 and re.search(r"(?:an|ish|ese|ian|ch|i)$", words[0]) and words[0] not in ("Prime",):
                words = words[1:]
            return " ".join(words)
    return None


ROW_FIELDS = ("name", "kind", "country", "mention")
_ROW_SCHEMA = {
    "type": "array", "minItems": 4, "maxItems": 4,
    "prefixItems": [{"type": "string", "minLength": 1, "maxLength": 60}, {"enum": list(get_args(ActorKind))},
                    {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]},
                    {"anyOf": [{"type": "string", "maxLength": 60}, {"type": "null"}]}],
}


def _from_row(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != len(ROW_FIELDS):
            raise ValueError("an actor is a list [name, kind, country, mention]")
        return dict(zip(ROW_FIELDS, value))
    return value


# An actor is written as a compact row [name, kind, country, mention]: a third of the tokens
# of an object with keys, which the model would otherwise spend one decode step per token on.
ActorRow = Annotated[ActorDraft, BeforeValidator(_from_row), WithJsonSchema(_ROW_SCHEMA)]


class ActorsDraft(BaseModel):
    """The actors of the article, each as [name, kind, country, mention]."""

    actors: list[ActorRow] = Field(default_factory=list, max_length=14)

    @model_validator(mode="after")
    def _grounded(self, info: ValidationInfo) -> "ActorsDraft":
        ctx = _ctx(info)
        if ctx is None:
            return self
        text = ctx.article
        problems, kept, seen = [], [], {}
        for a in self.actors:
            good = expand_mentions(a, text)
            if not good:
                # nothing locates this actor in the text: re-ask when no actor at all is grounded,
                # else drop it (and count it) — a full re-ask of the actor list costs a whole call
                problems.append(f"actor {a.name!r}: neither its name nor mention {a.mention!r} are words of the "
                                f"article; give the exact words the article uses for it, or leave it out")
                ctx.dropped["actors"] += 1
                continue
            if a.mention and not _verbatim(a.mention, text):
                ctx.dropped["mentions"] += 1
            a.mentions = good
            a.role = find_role(a, text)
            key = _surname(a.name) if a.kind == "person" else a.name.casefold()
            if key in seen:  # "Mr Yushchenko" and "Viktor Yushchenko" are one actor
                first = seen[key]
                first.mentions = list(dict.fromkeys(first.mentions + a.mentions))
                if len(a.name) > len(first.name) and first.name in text and a.name in text:
                    first.name = a.name
                continue
            seen[key] = a
            kept.append(a)
        if problems and not kept and not ctx.last_attempt:
            ctx.dropped.clear()
            raise ValueError("; ".join(problems))
        self.actors = kept
        return self


def sentence_model(names: list[str]) -> type[BaseModel]:
    """Draft model for one sentence: what it states (a demand, a position or none), with the holder
    an enum of `names`. Its JSON schema is a union of three flat shapes, so a "none" answer is
    just {"type": "none"} and the grammar forces nothing it does not need. A demand has no topic
    (its action is read from the sentence, see `paraphrase`) and its addressees are read from the
    sentence too (see `addressees_in`): the model writes neither."""
    allowed = set(names)
    name = {"enum": list(names)} if names else {"type": "string", "maxLength": 60}
    topic = {"type": "string", "maxLength": 40}
    variants = [
        {"type": "object", "properties": {"type": {"const": "none"}}, "required": ["type"]},
        {"type": "object", "properties": {"type": {"const": "position"}, "actor": name, "topic": topic},
         "required": ["type", "actor", "topic"]},
        {"type": "object", "properties": {"type": {"const": "demand"}, "actor": name}, "required": ["type", "actor"]},
    ]

    def _schema(schema: dict) -> None:
        title = schema.get("title", "Statement")
        schema.clear()
        schema.update(title=title, description="What the given sentence states: a demand, a position, or none.",
                      type="object", anyOf=variants)

    class Statement(BaseModel):
        model_config = ConfigDict(json_schema_extra=_schema)
        type: Literal["none", "position", "demand"]
        actor: Optional[str] = None
        topic: Optional[str] = Field(default=None, max_length=40)

        @model_validator(mode="after")
        def _check(self, info: ValidationInfo) -> "Statement":
            ctx = _ctx(info)
            if self.type == "none":
                return self
            if self.actor is None:
                raise ValueError(f"a {self.type} needs an actor")
            if self.type == "position" and self.topic is None:
                raise ValueError("a position needs a topic")
            if self.topic and ctx is not None:
                self.topic = _own_script(self.topic, ctx.article)
            if ctx is None or not allowed:
                return self
            if self.actor in allowed:
                return self
            if not ctx.last_attempt:
                raise ValueError(f"actor {self.actor!r} is not one of the actors {sorted(allowed)}")
            ctx.dropped[f"{self.type}s"] += 1
            self.type, self.actor, self.topic = "none", None, None
            return self

    return Statement


def _own_script(topic: str, article: str) -> str:
    """The topic up to its first character the article never uses (a small model sometimes drifts
    into another script mid-phrase: "agreement on a机制 for")."""
    seen = set(article)
    for i, ch in enumerate(topic):
        if not ch.isascii() and ch not in seen:
            return topic[:i].rstrip(" ,;:-")
    return topic


_DEMAND_TO = re.compile(
    r"\b(?:call(?:ed|s|ing)? (?:on|for)|urg\w*|ask\w*|press\w*|demand\w*|told|tell\w*|appeal\w*|"
    r"want\w*|insist\w*|persuad\w*|invit\w*|encourag\w*)\b(.*)", re.I)
_MUST = re.compile(r"\b(?:must|should|needs? to|has to|have to|ought to)\b(.*)", re.I)
_SAID = re.compile(r"\b(?:said|says|say|stated|told \w+|added|argued|insisted|warned|claimed|believes?|"
                   r"hopes?|declared|stressed|noted|confirmed|reiterated|denied|accused|blamed)\b,?\s*(?:that\s+)?(.*)",
                   re.I)
_QUOTE = re.compile(r"[\"“]([^\"”]{12,})[\"”]")


def _clause(s: str, words: int = 16) -> str:
    s = re.split(r"(?<=[^A-Z])[.;](?:\s|$)", s.strip(" ,:"), maxsplit=1)[0]
    s = re.split(r",\s+(?:stated|said|says|added|according|declared|told)\b", s, maxsplit=1)[0]
    w = s.split()
    return " ".join(w[:words]) + (" …" if len(w) > words else "")


def paraphrase(kind: str, sentence: str) -> str:
    """The demanded action or the stated view, taken from the sentence's own words."""
    if kind == "demand":
        m = _DEMAND_TO.search(sentence)
        if m:
            rest = m.group(1)
            to = re.search(r"\bto\s+(.*)", rest)
            if to:
                return _clause(to.group(1))
            if rest.strip():
                return _clause(re.sub(r"^\s*(?:for|that)\s+", "", rest))
        m = _MUST.search(sentence)
        if m:
            return _clause(m.group(0))
    q = _QUOTE.search(sentence)
    if q:
        return _clause(q.group(1), 20)
    m = _SAID.search(sentence)
    if m and len(m.group(1).split()) >= 3:
        return _clause(m.group(1), 20)
    return _clause(sentence, 20)


def actors_answer(draft: ActorsDraft) -> str:
    """The validated actors as the model writes them (rows), for the conversation that follows."""
    rows = [[getattr(a, f) for f in ROW_FIELDS] for a in draft.actors]
    return json.dumps({"actors": rows}, ensure_ascii=False)


def to_actors(draft: ActorsDraft) -> list[Actor]:
    """Public actors from a validated draft."""
    return [Actor(name=a.name.strip(), kind=a.kind, role=a.role or None, country=a.country or None,
                  mentions=a.mentions) for a in draft.actors]


def addressees_in(sentence: str, actors: list[Actor], holder: str) -> list[str]:
    """The actors a demand in `sentence` is addressed to: the other actors the sentence names after
    its demand verb ("urged Korsk and the Brigade to ..."), in the order it names them."""
    cue = _DEMAND_TO.search(sentence)
    start = cue.start(1) if cue else 0
    found = []
    for a in actors:
        if a.name == holder:
            continue
        hits = [m.start() for form in dict.fromkeys([a.name, *a.mentions])
                for m in re.finditer(rf"(?<!\w){re.escape(form)}(?!\w)", sentence) if m.start() >= start]
        if hits:
            found.append((min(hits), a.name))
    return [name for _, name in sorted(found)][:6]


def to_statements(draft: BaseModel, sentence: Sentence, actors: list[Actor]) -> tuple[list[Position], list[Demand]]:
    """Public positions and demands of one sentence; evidence is the sentence with its exact offsets."""
    st = draft
    if st.type == "none":
        return [], []
    ev = Evidence(quote=sentence.text, start=sentence.start, end=sentence.end)
    kind = st.type
    if kind == "demand" and not (_DEMAND_TO.search(sentence.text) or _MUST.search(sentence.text)):
        # a demand is a call to act ("urged", "called on", "must"); without one the sentence states a view.
        # (Offering no demand in the schema for such sentences was tried: the model then answered "none"
        # where the gold has a position, positions F1 0.772 -> 0.730, eval-experiment-nodemand-schema.json)
        kind = "position"
    text = paraphrase(kind, sentence.text)
    if kind == "demand":
        return [], [Demand(actor=st.actor, addressees=addressees_in(sentence.text, actors, st.actor),
                           action=text, evidence=ev)]
    # a demand has no topic of the model's: its position takes the stance's first words
    topic = (st.topic or "").strip() or _clause(text, 5).rstrip(" …") or "statement"
    return [Position(actor=st.actor, topic=topic, stance=text, evidence=ev)], []
