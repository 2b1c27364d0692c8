"""Deterministic scorer for ArticleRecord predictions (record spec §3, no LLM judge).

Conventions used everywhere (``_prf``):
    P  = tp / n_pred   if n_pred else (1.0 if n_gold == 0 else 0.0)
    R  = tp / n_gold   if n_gold else (1.0 if n_pred == 0 else 0.0)
    F1 = 2PR / (P + R), 0.0 when P + R == 0
An invalid prediction scores 0 on every field; its gold items count as false negatives.

Alignments are one-to-one (scipy ``linear_sum_assignment``) over the pairs that
"can match": they first maximise the number of matched pairs, then the total pair
score (name score for actors, character overlap for evidence spans).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
from pydantic import ValidationError
from rapidfuzz import fuzz
from scipy.optimize import linear_sum_assignment

from summarizer.schema import ArticleRecord, Evidence, Provenance

FIELDS = ("actors", "positions", "demands", "figures")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_ARTICLE = re.compile(r"^(?:the|a|an)\s+")
Span = tuple[int, int]


# ---------------------------------------------------------------- text
def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _trim(text: str) -> str:
    """Strip surrounding punctuation/space and leading articles, repeatedly."""
    prev = None
    while text != prev:
        prev = text
        i, j = 0, len(text)
        while i < j and (_is_punct(text[i]) or text[i].isspace()):
            i += 1
        while j > i and (_is_punct(text[j - 1]) or text[j - 1].isspace()):
            j -= 1
        text = _ARTICLE.sub("", text[i:j])
    return text


def normalize(text: str) -> str:
    """NFKC, casefold, straight quotes, collapse white space, strip surrounding
    punctuation and leading articles (the, a, an)."""
    text = unicodedata.normalize("NFKC", text or "").casefold().translate(_QUOTES)
    return _trim(" ".join(text.split()))


def _fold_map(text: str) -> tuple[str, list[int], list[int]]:
    """Fold ``text`` like normalize() (without trimming), keeping for every output
    character the raw start and end offsets of the cluster that produced it."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1  # keep a base character with its combining marks
        piece = unicodedata.normalize("NFKC", text[i:j]).casefold().translate(_QUOTES)
        for ch in piece:
            if ch.isspace():
                if out and out[-1] == " ":
                    ends[-1] = j
                    continue
                ch = " "
            out.append(ch)
            starts.append(i)
            ends.append(j)
        i = j
    return "".join(out), starts, ends


def locate(quote: Union[str, Evidence, dict], article: str) -> Optional[Span]:
    """Raw (start, end) of a quote in the article, or None.

    Uses the evidence offsets when set and valid, else an exact search, else a
    search in the normalised article mapped back to raw offsets."""
    start = end = None
    if isinstance(quote, dict):
        quote = Evidence.model_validate(quote)
    if isinstance(quote, Evidence):
        start, end, quote = quote.start, quote.end, quote.quote
    if start is not None and end is not None and article[start:end] == quote:
        return start, end
    k = article.find(quote) if quote else -1
    if k >= 0:
        return k, k + len(quote)
    needle = _trim(_fold_map(quote)[0])
    if not needle:
        return None
    hay, starts, ends = _fold_map(article)
    k = hay.find(needle)
    if k < 0:
        return None
    return starts[k], ends[k + len(needle) - 1]


def grounded(quote: str, article: str) -> bool:
    """A quote is grounded if its (non-empty) normalised text occurs in the normalised article."""
    q = normalize(quote)
    return bool(q) and q in normalize(article)


# ---------------------------------------------------------------- scores
def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else (1.0 if n_gold == 0 else 0.0)
    r = tp / n_gold if n_gold else (1.0 if n_pred == 0 else 0.0)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class FieldScore:
    """Counts for one field. ``sums`` holds, per attribute, the sum over matched
    pairs (accuracy = sum / tp); ``strict_tp`` counts matches with the right actor."""

    tp: int = 0
    n_pred: int = 0
    n_gold: int = 0
    strict_tp: Optional[int] = None
    sums: dict[str, float] = field(default_factory=dict)
    valid: bool = True

    def prf(self, strict: bool = False) -> tuple[float, float, float]:
        """(precision, recall, F1) by the module convention; all 0 when invalid."""
        if not self.valid:
            return 0.0, 0.0, 0.0
        return _prf(self.strict_tp if strict else self.tp, self.n_pred, self.n_gold)

    @property
    def f1(self) -> float:
        return self.prf()[2]

    def __add__(self, other: "FieldScore") -> "FieldScore":
        strict = None if self.strict_tp is None and other.strict_tp is None else \
            (self.strict_tp or 0) + (other.strict_tp or 0)
        sums = {k: self.sums.get(k, 0.0) + other.sums.get(k, 0.0) for k in {**self.sums, **other.sums}}
        return FieldScore(self.tp + other.tp, self.n_pred + other.n_pred, self.n_gold + other.n_gold,
                          strict, sums, self.valid or other.valid)

    def to_dict(self) -> dict:
        p, r, f = self.prf()
        d = {"tp": self.tp, "n_pred": self.n_pred, "n_gold": self.n_gold,
             "precision": p, "recall": r, "f1": f}
        for k in sorted(self.sums):
            d[k] = self.sums[k] / self.tp if self.tp else None
        if self.strict_tp is not None:
            d["strict_tp"] = self.strict_tp
            d["strict_precision"], d["strict_recall"], d["strict_f1"] = self.prf(strict=True)
        return d


@dataclass
class ArticleScore:
    """One article's scores: per-field counts, grounding counts and run costs."""

    valid: bool
    fields: dict[str, FieldScore]
    n_quotes: int = 0
    n_grounded: int = 0
    latency_s: Optional[float] = None
    tokens: Optional[int] = None
    retries: Optional[int] = None

    @property
    def grounded_rate(self) -> float:
        return self.n_grounded / self.n_quotes if self.n_quotes else 1.0

    @property
    def overall_f1(self) -> float:
        return sum(self.fields[f].f1 for f in FIELDS) / len(FIELDS)

    def to_dict(self) -> dict:
        return {"valid": self.valid, "overall_f1": self.overall_f1,
                "grounded_rate": self.grounded_rate, "n_quotes": self.n_quotes,
                "n_grounded": self.n_grounded, "latency_s": self.latency_s,
                "tokens": self.tokens, "retries": self.retries,
                **{f: self.fields[f].to_dict() for f in FIELDS}}


# ---------------------------------------------------------------- alignment
def _align(score: np.ndarray, ok: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs among ``ok`` cells: most pairs first, then highest total score."""
    if not ok.any():
        return []
    bonus = float(score[ok].sum()) + 1.0
    weights = np.where(ok, score + bonus, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


def _overlap(a: Optional[Span], b: Optional[Span]) -> int:
    if a is None or b is None:
        return 0
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _spans(pred, gold, article: str):
    """Located spans of both sides plus empty score and can-match matrices."""
    shape = (len(pred), len(gold))
    return ([locate(x.evidence, article) for x in pred], [locate(x.evidence, article) for x in gold],
            np.zeros(shape), np.zeros(shape, dtype=bool))


def _unit(u: str) -> str:
    u = u.strip().casefold()
    return u[:-1] if len(u) > 1 and u.endswith("s") else u


def _norm_opt(s: Optional[str]) -> Optional[str]:
    return None if s is None else normalize(s)


def _score_actors(pred, gold) -> tuple[FieldScore, dict[str, str]]:
    """Align actors; return the field score and the pred-name → gold-name map."""
    def forms(a):
        return {f for f in map(normalize, [a.name, *a.mentions]) if f}

    pf, gf = [forms(a) for a in pred], [forms(a) for a in gold]
    score = np.zeros((len(pred), len(gold)))
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if pf[i] & gf[j]:
                score[i, j] = 2.0
            else:
                pn, gn = normalize(p.name), normalize(g.name)
                ratio = fuzz.ratio(pn, gn) if pn and gn else 0.0
                score[i, j] = ratio / 100 if ratio >= 90 else 0.0
    pairs = _align(score, score > 0)
    fs = FieldScore(len(pairs), len(pred), len(gold), sums={"kind_accuracy": 0.0, "country_accuracy": 0.0})
    for i, j in pairs:
        fs.sums["kind_accuracy"] += pred[i].kind == gold[j].kind
        fs.sums["country_accuracy"] += _norm_opt(pred[i].country) == _norm_opt(gold[j].country)
    return fs, {pred[i].name: gold[j].name for i, j in pairs}


def _set_f1(pred: set, gold: set) -> float:
    if not pred and not gold:
        return 1.0
    return 2 * len(pred & gold) / (len(pred) + len(gold))


def _score_claims(pred, gold, article: str, actor_map: dict[str, str], demands: bool) -> FieldScore:
    """Positions or demands: match by span overlap ≥ half the shorter span."""
    ps, gs, score, ok = _spans(pred, gold, article)
    for i, a in enumerate(ps):
        for j, b in enumerate(gs):
            ov = _overlap(a, b)
            score[i, j] = ov
            ok[i, j] = ov > 0 and ov >= 0.5 * min(a[1] - a[0], b[1] - b[0])
    pairs = _align(score, ok)
    sums = {"actor_accuracy": 0.0, **({"addressee_f1": 0.0} if demands else {})}
    fs = FieldScore(len(pairs), len(pred), len(gold), strict_tp=0, sums=sums)
    for i, j in pairs:
        right = actor_map.get(pred[i].actor) == gold[j].actor
        fs.sums["actor_accuracy"] += right
        fs.strict_tp += right
        if demands:
            mapped = {actor_map.get(a, ("unaligned", a)) for a in pred[i].addressees}
            fs.sums["addressee_f1"] += _set_f1(mapped, set(gold[j].addressees))
    return fs


def _score_figures(pred, gold, article: str) -> FieldScore:
    """Figures: equal values (0.5% rel. tol.) with overlapping spans, or equal
    values and units when either quote cannot be located."""
    ps, gs, score, ok = _spans(pred, gold, article)
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if not math.isclose(p.value, g.value, rel_tol=0.005):
                continue
            same_unit = _unit(p.unit) == _unit(g.unit)
            if ps[i] is None or gs[j] is None:
                ok[i, j] = same_unit
            else:
                ov = _overlap(ps[i], gs[j])
                ok[i, j] = ov > 0
                score[i, j] = ov + 0.5 * same_unit
    pairs = _align(score, ok)
    fs = FieldScore(len(pairs), len(pred), len(gold), sums={"unit_accuracy": 0.0, "qualifier_accuracy": 0.0})
    for i, j in pairs:
        fs.sums["unit_accuracy"] += _unit(pred[i].unit) == _unit(gold[j].unit)
        fs.sums["qualifier_accuracy"] += pred[i].qualifier == gold[j].qualifier
    return fs


# ---------------------------------------------------------------- public
def _costs(prov: Optional[Provenance]) -> dict:
    if prov is None:
        return {}
    return {"latency_s": prov.latency_s, "retries": prov.retries,
            "tokens": prov.usage.prompt_tokens + prov.usage.completion_tokens}


def score_article(gold: Union[dict, ArticleRecord], pred: Union[dict, ArticleRecord, None],
                  article: str) -> ArticleScore:
    """Score one prediction against its gold record on the raw article text.

    ``gold`` must validate (a ValidationError is a fixture bug). A ``pred`` that is
    None or fails ArticleRecord validation is invalid: F1 0 on every field, every
    gold item a false negative, no quotes counted."""
    gold = gold if isinstance(gold, ArticleRecord) else ArticleRecord.model_validate(gold)
    record: Optional[ArticleRecord] = None
    if isinstance(pred, ArticleRecord):
        record = pred
    elif pred is not None:
        try:
            record = ArticleRecord.model_validate(pred)
        except ValidationError:
            record = None  # invalid prediction: scored 0 on every field below
    if record is None:
        costs = {}
        if isinstance(pred, dict) and isinstance(pred.get("provenance"), dict):
            try:
                costs = _costs(Provenance.model_validate(pred["provenance"]))
            except ValidationError:
                costs = {}  # no usable provenance: the article reports no costs
        fields = {f: FieldScore(n_gold=len(getattr(gold, f)), valid=False,
                                strict_tp=0 if f in ("positions", "demands") else None)
                  for f in FIELDS}
        return ArticleScore(False, fields, **costs)

    actors, amap = _score_actors(record.actors, gold.actors)
    fields = {
        "actors": actors,
        "positions": _score_claims(record.positions, gold.positions, article, amap, demands=False),
        "demands": _score_claims(record.demands, gold.demands, article, amap, demands=True),
        "figures": _score_figures(record.figures, gold.figures, article),
    }
    norm_article = normalize(article)
    quotes = [normalize(ev.quote) for _, _, ev in record.evidence_items()]
    return ArticleScore(True, fields, n_quotes=len(quotes),
                        n_grounded=sum(bool(q) and q in norm_article for q in quotes),
                        **_costs(record.provenance))


def aggregate(scores: list[ArticleScore]) -> dict:
    """Micro-average over articles: P/R/F1 per field from summed counts, attribute
    accuracies pooled over all matched pairs, strict F1 from summed strict counts,
    valid and grounded rates, overall_f1 = mean of the four micro field F1s, and
    run costs (latency, tokens, retries) over the predictions that report them."""
    n = len(scores)
    merged = {}
    for f in FIELDS:
        total = FieldScore(valid=False)
        for s in scores:
            total = total + s.fields[f]
        merged[f] = total
    n_quotes = sum(s.n_quotes for s in scores)
    costed = [s for s in scores if s.latency_s is not None]
    return {
        "n_articles": n,
        "valid_rate": sum(s.valid for s in scores) / n if n else 0.0,
        "grounded_rate": sum(s.n_grounded for s in scores) / n_quotes if n_quotes else 1.0,
        "n_quotes": n_quotes,
        "overall_f1": sum(merged[f].f1 for f in FIELDS) / len(FIELDS),
        **{f: merged[f].to_dict() for f in FIELDS},
        "costs": {
            "n_reported": len(costed),
            "latency_s_total": sum(s.latency_s for s in costed),
            "latency_s_mean": sum(s.latency_s for s in costed) / len(costed) if costed else None,
            "tokens_total": sum(s.tokens or 0 for s in costed),
            "retries_total": sum(s.retries or 0 for s in costed),
        },
    }
