"""Deterministic figure extraction: every number the body states, grounded by construction.

Numbers are exact facts of the text, so a rule-based reader finds them faster and more
reliably than a small model: digits with scales and currencies, percentages, number
words, "dozens"/"hundreds", decades, fractions, ranges and periods, with the hedge
words that set the qualifier. Exclusions follow the labelling rules: day-and-month
dates, clock times, numbers inside names, counting phrases pointing back at actors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import Evidence, Figure
from .text import Article, looks_like_code

_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALE = {"hundred": 1e2, "thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6,
          "billion": 1e9, "bn": 1e9, "b": 1e9, "trillion": 1e12, "tn": 1e12}
_CURRENCY_SYM = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "yen"}
_CURRENCY_WORD = {"dollars": "USD", "dollar": "USD", "pounds": "GBP", "euros": "EUR", "euro": "EUR",
                  "yuan": "yuan", "roubles": "roubles", "rubles": "rubles", "pesos": "pesos",
                  "yen": "yen", "rupees": "rupees", "hryvnia": "hryvnia", "drams": "drams", "manats": "manats"}
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_HEDGES = [
    (r"(?:more than|over|at least|upwards of|in excess of|some \w+ more than|no fewer than|a minimum of)", "at_least"),
    (r"(?:up to|fewer than|less than|under|at most|no more than|by|as many as|a maximum of)", "at_most"),
    (r"(?:about|around|approximately|nearly|almost|roughly|some|an estimated|estimated|circa|close to|just over|just under|an approximate)", "approximate"),
]
_WORDNUM = "|".join(sorted(_UNITS, key=len, reverse=True))
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE_RE = r"(?:\s?(?:hundred|thousand|million|billion|trillion|bn|mn|tn)\b|(?:m|bn|k|tn)\b)"
_TOKEN = re.compile(
    r"\b(?P<vague>dozens|hundreds|thousands|millions|tens of thousands|a dozen|half an hour|two thirds|one third|a third|a quarter|half of|doubled|double|tripled)\b"
    rf"|(?:(?P<cur>[$£€¥])\s?)?(?P<num>{_NUM})(?P<scale>{_SCALE_RE})?(?P<pct>\s?%|\s(?:per ?cent|percent)\b)?"
    rf"|\b(?P<word>(?:{_WORDNUM})(?:[- ](?:{_WORDNUM}))?)(?P<wscale>\s(?:hundred|thousand|million|billion)\b)?(?P<wpct>\s(?:per ?cent|percent)\b)?"
    ,
    re.I,
)
_VERBS = {"was", "were", "are", "is", "have", "has", "had", "died", "fled", "say", "said", "will", "would", "could", "who", "which", "that"}
_STOP = {"and", "or", "of", "the", "a", "an", "more", "than", "about", "some", "per", "in", "to", "from", "other"}


@dataclass
class _Hit:
    start: int
    end: int
    value: float
    unit: str | None
    qualifier: str = "exact"


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _word_value(w: str) -> float:
    parts = re.split(r"[- ]", w.lower())
    return float(sum(_UNITS.get(p, 0) for p in parts))


def _noun_after(text: str, pos: int, limit: int) -> str | None:
    """The counted noun: first lowercase word after the number, skipping adjectives in capitals."""
    for m in re.finditer(r"[A-Za-z][A-Za-z'-]*|\d[\d,.]*|[.;:!?()]", text[pos:limit]):
        w = m.group(0)
        if w in ".;:!?()":
            return None
        if w[0].isdigit() or w.lower() in _STOP or w[0].isupper():
            continue
        w = w.lower()
        if w in _VERBS or (w.endswith("ed") and not w.endswith("eed")):
            return "people"
        return w
    return None


def _excluded(text: str, s: int, e: int, raw: str) -> bool:
    before, after = text[max(0, s - 12):s], text[e:e + 12]
    if re.search(r"[A-Za-z]-?$", before) and not re.search(r"\s$", before):
        return True  # inside a name: G8, F-16
    if re.match(r"-?[A-Za-z]\w", after) and not re.match(r"-(?:year|month|day|week|hour|strong|member|point|mile)", after, re.I):
        if re.match(r"(?:st|nd|rd|th)\b", after):
            return True  # ordinal
        if not re.match(r"(?:m|bn|k|tn)\b", after):
            return True
    if re.search(rf"\b(?:{_MONTHS})\.?\s+$", before, re.I) and re.fullmatch(r"\d{1,2}", raw):
        return True  # October 10
    if re.fullmatch(r"\d{1,2}", raw) and re.match(rf"\s+(?:{_MONTHS})\b", after, re.I):
        return True  # 10 October
    if re.match(r"[:.]\d\d\b", after) and re.fullmatch(r"\d{1,2}", raw) or re.match(r"\s?(?:am|pm|a\.m\.|p\.m\.|GMT|BST)\b", after, re.I):
        return True  # clock time
    if re.search(r"\d[:.]$", before) or re.search(r"\d[-–]$", before):
        return True  # 10:30, the second half of 1991-94
    if re.search(r"(?:Resolution|Article|No\.?|number|Section|Chapter|Flight|Route|Room|Highway)\s+$", before):
        return True
    return False


def _qualifier(text: str, s: int) -> str:
    before = text[max(0, s - 30):s].lower()
    for pattern, q in _HEDGES:
        if re.search(rf"\b{pattern}\s+(?:the\s+|a\s+)?$", before):
            return q
    return "exact"


def _hits(text: str, start: int, end: int) -> list[_Hit]:
    hits: list[_Hit] = []
    for m in _TOKEN.finditer(text, start, end):
        s, e = m.start(), m.end()
        if m.group("num"):
            raw = m.group("num")
            if _excluded(text, m.start("num"), m.end("num") + (len(m.group("scale") or "") if m.group("scale") else 0), raw):
                continue
            v = _num(raw)
            scale = (m.group("scale") or "").strip().lower()
            if scale:
                v *= _SCALE[scale]
            unit = None
            if m.group("cur"):
                unit = _CURRENCY_SYM[m.group("cur")]
            elif m.group("pct"):
                unit = "percent"
            elif re.fullmatch(r"(1[6-9]|20)\d\d", raw) and not scale:
                nxt = text[e:e + 2]
                if nxt.startswith("s"):
                    hits.append(_Hit(s, e + 1, v, "year", "approximate"))
                    continue
                unit = "year"
            hits.append(_Hit(s, e, v, unit, _qualifier(text, s)))
        elif m.group("word"):
            w = m.group("word")
            before = text[max(0, s - 5):s].lower()
            if w.lower() == "one" or re.search(r"\bthe\s+$", before):
                continue  # "one of", "the two countries"
            if re.match(r"\s*-?\s*(?:th|st|nd|rd)\b", text[e:e + 4]):
                continue
            v = _word_value(w)
            if m.group("wscale"):
                v *= _SCALE[m.group("wscale").strip().lower()]
            unit = "percent" if m.group("wpct") else None
            nxt = re.match(r"\s+(decades?|years?|months?|weeks?|days?|hours?)\b", text[e:e + 12], re.I)
            if nxt and nxt.group(1).lower().startswith("decade"):
                hits.append(_Hit(s, e + nxt.end(), v * 10, "years", _qualifier(text, s)))
                continue
            hits.append(_Hit(s, e, v, unit, _qualifier(text, s)))
        else:
            g = m.group("vague").lower()
            table = {
                "dozens": (12, None, "at_least"), "hundreds": (100, None, "at_least"),
                "thousands": (1000, None, "at_least"), "millions": (1e6, None, "at_least"),
                "tens of thousands": (10000, None, "at_least"), "a dozen": (12, None, "exact"),
                "half an hour": (0.5, "hours", "exact"), "two thirds": (66.67, "percent", "exact"),
                "one third": (33.33, "percent", "exact"), "a third": (33.33, "percent", "exact"),
                "a quarter": (25, "percent", "exact"), "half of": (50, "percent", "exact"),
                "doubled": (2, "times", "exact"), "double": (2, "times", "exact"), "tripled": (3, "times", "exact"),
            }
            v, unit, q = table[g]
            if q == "exact":
                q = _qualifier(text, s)
            hits.append(_Hit(s, e, v, unit, q))
    # "a decade" / "almost a decade"
    for m in re.finditer(r"\ba decade\b", text[start:end], re.I):
        s = start + m.start()
        hits.append(_Hit(s, start + m.end(), 10, "years", _qualifier(text, s)))
    return sorted(hits, key=lambda h: h.start)


def _ranges(text: str, hits: list[_Hit]) -> None:
    """Set at_least/at_most on estimate ranges; periods and from..to stay exact."""
    for a, b in zip(hits, hits[1:]):
        gap = text[a.end:b.start]
        if not re.fullmatch(r"\s*(?:-|–|to|and)\s*", gap):
            continue
        before = text[max(0, a.start - 12):a.start].lower()
        if re.fullmatch(r"\s*(?:and)\s*", gap) and not re.search(r"between\s+$", before):
            continue
        years = a.unit == "year" or b.unit == "year"
        if years or re.search(r"from\s+$", before):
            continue
        a.qualifier, b.qualifier = "at_least", "at_most"
        if b.unit and not a.unit:
            a.unit = b.unit


def _period(text: str, hits: list[_Hit], start: int, end: int) -> list[_Hit]:
    """1991-94 → 1991 and 1994."""
    extra = []
    for m in re.finditer(r"\b((?:1[6-9]|20)\d\d)\s?[-–]\s?(\d\d)\b(?![\d-])", text[start:end]):
        s = start + m.start(2)
        century = m.group(1)[:2]
        extra.append(_Hit(s, start + m.end(2), float(century + m.group(2)), "year", "exact"))
    return extra


def _sentence_of(article: Article, pos: int):
    for s in article.sentences:
        if s.start <= pos < s.end:
            return s
    return None


def extract_figures(article: Article) -> list[Figure]:
    """Every figure stated in the body, each with a short verbatim quote and offsets."""
    text = article.text
    out: list[Figure] = []
    for sent in article.sentences:
        if looks_like_code(sent.text):
            continue
        hits = _hits(text, sent.start, sent.end)
        hits += _period(text, hits, sent.start, sent.end)
        hits.sort(key=lambda h: h.start)
        _ranges(text, hits)
        for h in hits:
            unit = h.unit
            noun = _noun_after(text, h.end, sent.end)
            if unit is None or unit in ("percent",):
                cur = _CURRENCY_WORD.get(noun or "")
                if cur and unit is None:
                    unit = cur
                elif unit is None:
                    unit = noun or "count"
            # quote: the number phrase through the counted noun (at most ~8 words), within the sentence
            qend = h.end
            m = re.match(r"(?:[ \t]+[\w'’%-]+){0,6}", text[h.end:sent.end])
            tail = text[h.end:h.end + (m.end() if m else 0)]
            cut = re.search(r"[,;:.!?\"“”]", tail)
            qend = h.end + (cut.start() if cut else len(tail))
            qstart = h.start
            hedge = re.search(r"\b(?:more than|at least|up to|about|around|nearly|almost|some|over|fewer than|less than|between|from|approximately|roughly)\s+(?:the\s+|a\s+)?$",
                              text[max(sent.start, h.start - 25):h.start], re.I)
            if hedge:
                qstart = max(sent.start, h.start - 25) + hedge.start()
            quote = text[qstart:qend].rstrip()
            qend = qstart + len(quote)
            what = re.sub(r"\s+", " ", quote)
            out.append(Figure(value=round(h.value, 4), unit=unit, what=what, qualifier=h.qualifier,
                              evidence=Evidence(quote=quote, start=qstart, end=qend)))
    return out
