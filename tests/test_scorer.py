"""Unit tests for the deterministic scorer (record spec §3), with hand-computed values."""
import copy
import json

import pytest

from summarizer.evals.scorer import FIELDS, aggregate, grounded, locate, normalize, score_article
from summarizer.schema import ArticleRecord

ARTICLE = (
    "Russia urges talks\n"
    "Russia's Foreign Minister Sergei Lavrov said that Moscow supports a ceasefire. "
    "He called on Armenia and Azerbaijan to stop the fighting. "
    "Armenia denied the claims. "
    "At least 18 soldiers were killed since Friday, and about 4,000 people fled. "
    "The OSCE Minsk Group said talks must resume."
)


def ev(quote):
    return {"quote": quote, "start": None, "end": None}


def actor(name, kind, country=None, mentions=()):
    return {"name": name, "kind": kind, "role": None, "country": country, "mentions": list(mentions)}


GOLD = {
    "headline": "Russia urges talks",
    "summary": "Russia backs a ceasefire; at least 18 soldiers were killed.",
    "actors": [
        actor("Sergei Lavrov", "person", "Russia", ["Sergei Lavrov", "He"]),
        actor("Russia", "state", "Russia", ["Russia", "Moscow"]),
        actor("Armenia", "state", "Armenia", ["Armenia"]),
        actor("Azerbaijan", "state", "Azerbaijan", ["Azerbaijan"]),
        actor("OSCE Minsk Group", "organization", None, ["The OSCE Minsk Group"]),
    ],
    "positions": [
        {"actor": "Russia", "topic": "ceasefire", "stance": "supports it",
         "evidence": ev("Moscow supports a ceasefire")},
        {"actor": "Armenia", "topic": "claims", "stance": "denies them",
         "evidence": ev("Armenia denied the claims")},
    ],
    "demands": [
        {"actor": "Sergei Lavrov", "addressees": ["Armenia", "Azerbaijan"], "action": "stop fighting",
         "evidence": ev("He called on Armenia and Azerbaijan to stop the fighting")},
        {"actor": "OSCE Minsk Group", "addressees": [], "action": "resume talks",
         "evidence": ev("talks must resume")},
    ],
    "figures": [
        {"value": 18, "unit": "soldiers", "what": "soldiers killed", "qualifier": "at_least",
         "evidence": ev("At least 18 soldiers were killed")},
        {"value": 4000, "unit": "people", "what": "people who fled", "qualifier": "approximate",
         "evidence": ev("about 4,000 people fled")},
    ],
}


def gold():
    return copy.deepcopy(GOLD)


def empty(**fields):
    rec = {"summary": "", "actors": [], "positions": [], "demands": [], "figures": []}
    rec.update(fields)
    return rec


def prf(score, field):
    d = score.fields[field].to_dict()
    return d["precision"], d["recall"], d["f1"]


# ------------------------------------------------------------------ normalize / locate
@pytest.mark.parametrize("raw, expected", [
    ("  The  \u201cKremlin\u201d  ", "kremlin"),
    ("An \ufb01ne\tday.", "fine day"),
    ("\uff2cavrov\u2019s", "lavrov's"),
    ("theory", "theory"),
    ("a", "a"),
    ("Stra\u00dfe", "strasse"),
    ("(the OSCE Minsk Group),", "osce minsk group"),
    ("\u2018The Hague\u2019", "hague"),
    ("", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_locate_offsets_exact_normalised_and_missing():
    k = ARTICLE.index("Armenia denied")
    assert locate({"quote": "Armenia denied", "start": k, "end": k + 14}, ARTICLE) == (k, k + 14)
    # wrong offsets fall back to an exact search (first occurrence)
    first = ARTICLE.index("Armenia")
    assert locate({"quote": "Armenia", "start": k, "end": k + 7}, ARTICLE) == (k, k + 7)
    assert locate({"quote": "Armenia", "start": 0, "end": 7}, ARTICLE) == (first, first + 7)
    assert locate("Armenia", ARTICLE) == (first, first + 7)
    text = "He said: \u201cWe will  not\nleave.\u201d Then he left."
    s, e = locate('"we will not leave."', text)
    assert text[s:e] == "We will  not\nleave"
    # the raw ligature is one character but two normalised ones
    assert locate("FINE", "A \ufb01ne day") == (2, 5)
    assert locate("Fi", "A \ufb01ne day") == (2, 3)
    assert locate("Paris agreed", ARTICLE) is None
    assert locate("...", ARTICLE) is None


# ------------------------------------------------------------------ whole records
def test_identity_scores_one_everywhere():
    s = score_article(gold(), gold(), ARTICLE)
    d = s.to_dict()
    assert s.valid and s.overall_f1 == 1.0 and s.grounded_rate == 1.0 and s.n_quotes == 6
    for f in FIELDS:
        assert (d[f]["precision"], d[f]["recall"], d[f]["f1"]) == (1.0, 1.0, 1.0)
    assert d["actors"]["kind_accuracy"] == d["actors"]["country_accuracy"] == 1.0
    assert d["positions"]["actor_accuracy"] == d["positions"]["strict_f1"] == 1.0
    assert d["demands"]["addressee_f1"] == d["demands"]["strict_f1"] == 1.0
    assert d["figures"]["unit_accuracy"] == d["figures"]["qualifier_accuracy"] == 1.0
    assert s.to_dict() == score_article(ArticleRecord.model_validate(gold()),
                                        ArticleRecord.model_validate(gold()), ARTICLE).to_dict()
    json.dumps(d)


def test_empty_prediction_has_zero_recall():
    s = score_article(gold(), empty(), ARTICLE)
    assert s.valid and s.grounded_rate == 1.0
    for f in FIELDS:
        assert prf(s, f) == (0.0, 0.0, 0.0)
    assert s.fields["actors"].n_gold == 5 and s.fields["actors"].n_pred == 0
    # nothing to find and nothing predicted scores 1 by convention
    assert score_article(empty(), empty(), ARTICLE).overall_f1 == 1.0


def test_item_order_does_not_matter():
    pred = gold()
    for f in FIELDS:
        pred[f].reverse()
    pred["demands"][0]["addressees"].reverse()
    assert score_article(gold(), pred, ARTICLE).to_dict() == score_article(gold(), gold(), ARTICLE).to_dict()


def test_alias_match_maps_actor_through_mentions():
    pred = empty(actors=[actor("Moscow", "state", "Russia")],
                 positions=[dict(gold()["positions"][0], actor="Moscow")])
    s = score_article(gold(), pred, ARTICLE)
    a = s.fields["actors"]
    assert (a.tp, a.n_pred, a.n_gold) == (1, 1, 5)
    assert prf(s, "actors") == pytest.approx((1.0, 0.2, 1 / 3))
    p = s.fields["positions"].to_dict()
    assert p["actor_accuracy"] == 1.0 and p["strict_tp"] == 1
    assert (p["precision"], p["recall"]) == (1.0, 0.5)


def test_fuzzy_name_match():
    pred = empty(actors=[actor("Sergey Lavrov", "person", "russia"), actor("Sergei Shoigu", "person", "Russia")])
    s = score_article(gold(), pred, ARTICLE).fields["actors"]
    # ratio("sergey lavrov", "sergei lavrov") = 92.3 >= 90; "sergei shoigu" matches nothing
    assert (s.tp, s.n_pred, s.n_gold) == (1, 2, 5)
    assert s.to_dict()["kind_accuracy"] == 1.0 and s.to_dict()["country_accuracy"] == 1.0


def test_sub_span_matches_and_small_overlap_does_not():
    pred = gold()
    pred["demands"][0]["evidence"] = ev("called on Armenia and Azerbaijan")  # 32 of 56 chars
    pred["demands"][1]["evidence"] = ev("said talks must resume.")
    assert prf(score_article(gold(), pred, ARTICLE), "demands") == (1.0, 1.0, 1.0)
    # overlaps the gold demand by "fighting" only: 8 < half of the shorter span (56)
    pred["demands"][0]["evidence"] = ev("fighting. Armenia denied the claims. At least 18 soldiers were killed")
    d = score_article(gold(), pred, ARTICLE).fields["demands"]
    assert (d.tp, d.n_pred, d.n_gold) == (1, 2, 2)


def test_wrong_span_is_a_miss():
    pred = gold()
    pred["demands"] = [dict(pred["demands"][0], evidence=ev("Armenia denied the claims"))]
    d = score_article(gold(), pred, ARTICLE).fields["demands"]
    assert (d.tp, d.n_pred, d.n_gold) == (0, 1, 2)
    assert d.prf() == (0.0, 0.0, 0.0)


def test_duplicates_cost_precision():
    g = gold()
    g["positions"] = g["positions"][:1]
    pred = copy.deepcopy(g)
    pred["positions"] = pred["positions"] * 2
    s = score_article(g, pred, ARTICLE)
    assert prf(s, "positions") == pytest.approx((0.5, 1.0, 2 / 3))


def test_wrong_actor_lowers_strict_f1_only():
    pred = gold()
    pred["demands"][0]["actor"] = "Russia"
    d = score_article(gold(), pred, ARTICLE).fields["demands"].to_dict()
    assert d["f1"] == 1.0
    assert d["actor_accuracy"] == 0.5 and d["addressee_f1"] == 1.0
    assert (d["strict_tp"], d["strict_precision"], d["strict_recall"], d["strict_f1"]) == (1, 0.5, 0.5, 0.5)


def test_addressee_f1_through_alignment():
    pred = gold()
    pred["actors"][2] = actor("Yerevan", "state", "Armenia", ["Armenia"])  # aligns to gold Armenia
    pred["positions"][1]["actor"] = "Yerevan"
    pred["demands"][0]["addressees"] = ["Yerevan", "Russia"]  # {Armenia, Russia} vs {Armenia, Azerbaijan}
    d = score_article(gold(), pred, ARTICLE).fields["demands"].to_dict()
    assert d["addressee_f1"] == pytest.approx((0.5 + 1.0) / 2)  # second demand: both empty = 1.0


@pytest.mark.parametrize("pred", [None, "bad", {"actors": "nope"},
                                  dict(gold(), demands=[dict(GOLD["demands"][0], actor="Putin")])])
def test_invalid_prediction_scores_zero(pred):
    s = score_article(gold(), pred, ARTICLE)
    assert not s.valid and s.overall_f1 == 0.0 and s.n_quotes == 0
    for f in FIELDS:
        fs = s.fields[f]
        assert fs.prf() == (0.0, 0.0, 0.0) and fs.tp == 0 and fs.n_pred == 0
    assert s.fields["actors"].n_gold == 5
    assert s.to_dict()["demands"]["strict_f1"] == 0.0
    agg = aggregate([score_article(gold(), gold(), ARTICLE), s])
    assert agg["valid_rate"] == 0.5
    assert agg["actors"]["recall"] == 0.5 and agg["actors"]["precision"] == 1.0
    assert aggregate([score_article(empty(), pred, ARTICLE)])["overall_f1"] == 0.0


def test_figure_value_tolerance_unit_and_qualifier():
    pred = gold()
    pred["figures"][0].update(value=18.05, unit="Soldier")  # 0.28% off, singular unit
    pred["figures"][1].update(qualifier="exact")
    f = score_article(gold(), pred, ARTICLE).fields["figures"].to_dict()
    assert f["f1"] == 1.0 and f["unit_accuracy"] == 1.0 and f["qualifier_accuracy"] == 0.5
    pred["figures"][0]["value"] = 18.2  # 1.1% off
    f = score_article(gold(), pred, ARTICLE).fields["figures"]
    assert (f.tp, f.n_pred, f.n_gold) == (1, 2, 2)
    # equal value, but the quote is elsewhere in the article: no match
    pred["figures"][0].update(value=18, evidence=ev("Armenia denied the claims"))
    assert score_article(gold(), pred, ARTICLE).fields["figures"].tp == 1


def test_figure_matched_by_value_and_unit_when_quote_not_located():
    pred = gold()
    pred["figures"][1]["evidence"] = ev("some 4000 people left")  # not in the article
    s = score_article(gold(), pred, ARTICLE)
    assert s.fields["figures"].tp == 2
    assert (s.n_quotes, s.n_grounded) == (6, 5) and s.grounded_rate == pytest.approx(5 / 6)
    pred["figures"][1]["unit"] = "refugees"
    assert score_article(gold(), pred, ARTICLE).fields["figures"].tp == 1


SMALL = "Pakistan said the deal was fair. India did not comment."
SMALL_GOLD = empty(actors=[actor("Pakistan", "state", "Pakistan", ["Pakistan"])],
                   positions=[{"actor": "Pakistan", "topic": "deal", "stance": "fair",
                               "evidence": ev("Pakistan said the deal was fair")}])


def test_aggregate_is_micro_over_counts():
    big = score_article(gold(), gold(), ARTICLE)
    pred = empty(actors=[actor("Pakistan", "organization", "Pakistan"), actor("India", "state")])
    small = score_article(SMALL_GOLD, pred, SMALL)
    # small article: actors tp1 np2 ng1, positions tp0 np0 ng1, demands/figures empty
    assert small.overall_f1 == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)
    agg = aggregate([big, small])
    assert (agg["actors"]["tp"], agg["actors"]["n_pred"], agg["actors"]["n_gold"]) == (6, 7, 6)
    assert agg["actors"]["precision"] == pytest.approx(6 / 7)
    assert agg["actors"]["f1"] == pytest.approx(12 / 13)
    assert agg["actors"]["kind_accuracy"] == pytest.approx(5 / 6)  # pooled over 6 matched pairs
    assert agg["positions"]["f1"] == pytest.approx(0.8)  # P = 2/2, R = 2/3
    assert agg["positions"]["strict_f1"] == pytest.approx(0.8)
    assert agg["overall_f1"] == pytest.approx((12 / 13 + 0.8 + 1 + 1) / 4)  # 0.930769...
    assert agg["overall_f1"] != pytest.approx((big.overall_f1 + small.overall_f1) / 2)
    assert agg["valid_rate"] == 1.0 and agg["grounded_rate"] == 1.0 and agg["n_articles"] == 2
    json.dumps(agg)


def test_aggregate_reports_costs_from_provenance():
    pred = gold()
    pred["provenance"] = {"backend": "x", "model": "m", "prompt_version": "1", "latency_s": 2.5,
                          "retries": 1, "usage": {"prompt_tokens": 100, "completion_tokens": 20}}
    agg = aggregate([score_article(gold(), pred, ARTICLE), score_article(gold(), gold(), ARTICLE)])
    assert agg["costs"] == {"n_reported": 1, "latency_s_total": 2.5, "latency_s_mean": 2.5,
                            "tokens_total": 120, "retries_total": 1}


def test_locate_combining_marks():
    text = "The Cafe\u0301 Rouge talks ended."
    s, e = locate("caf\u00e9 rouge", text)  # composed quote, decomposed article
    assert text[s:e] == "Cafe\u0301 Rouge"


def test_grounded():
    assert grounded("\u201cmoscow  SUPPORTS a ceasefire.\u201d", ARTICLE)
    assert not grounded("Moscow opposes a ceasefire", ARTICLE)
    assert not grounded("...", ARTICLE)  # nothing left after normalising
