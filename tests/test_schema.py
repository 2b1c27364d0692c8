import pytest
from pydantic import ValidationError

from summarizer.schema import ArticleRecord, Evidence

ARTICLE = "Russia urged Armenia to stop. Armenia said no."


def record(**over):
    base = {
        "actors": [{"name": "Russia", "kind": "state", "mentions": ["Russia"]},
                   {"name": "Armenia", "kind": "state", "mentions": ["Armenia"]}],
        "demands": [{"actor": "Russia", "addressees": ["Armenia"], "action": "stop",
                     "evidence": {"quote": "Russia urged Armenia to stop.", "start": 0, "end": 29}}],
        "positions": [{"actor": "Armenia", "topic": "demand", "stance": "refuses",
                       "evidence": {"quote": "Armenia said no.", "start": 30, "end": 46}}],
    }
    base.update(over)
    return base


def test_valid_record_is_grounded():
    r = ArticleRecord.model_validate(record())
    assert r.grounding_errors(ARTICLE) == []


def test_offsets_must_match_quote_length():
    with pytest.raises(ValidationError, match="span"):
        Evidence(quote="Armenia said no.", start=30, end=40)


def test_offsets_pointing_elsewhere_are_a_grounding_error():
    bad = record(positions=[{"actor": "Armenia", "topic": "t", "stance": "s",
                             "evidence": {"quote": "Armenia said no.", "start": 0, "end": 16}}])
    errors = ArticleRecord.model_validate(bad).grounding_errors(ARTICLE)
    assert len(errors) == 1 and "article[0:16]" in errors[0]


def test_quote_not_in_article_is_a_grounding_error():
    bad = record(positions=[{"actor": "Armenia", "topic": "t", "stance": "s",
                             "evidence": {"quote": "Armenia said yes."}}])
    errors = ArticleRecord.model_validate(bad).grounding_errors(ARTICLE, require_offsets=False)
    assert errors == ["positions[0]: quote not in article: 'Armenia said yes.'"]


def test_unknown_actor_reference_is_rejected():
    bad = record()
    bad["demands"][0]["actor"] = "Moscow"
    with pytest.raises(ValidationError, match="'Moscow' is not an actor"):
        ArticleRecord.model_validate(bad)


def test_unknown_addressee_is_rejected():
    bad = record()
    bad["demands"][0]["addressees"] = ["Azerbaijan"]
    with pytest.raises(ValidationError, match="addressee 'Azerbaijan'"):
        ArticleRecord.model_validate(bad)


def test_mention_must_be_verbatim():
    bad = record()
    bad["actors"][0]["mentions"] = ["Moscow"]
    errors = ArticleRecord.model_validate(bad).grounding_errors(ARTICLE)
    assert errors == ["actor 'Russia': mention not in article: 'Moscow'"]


@pytest.mark.parametrize("published", ["2020-13", "October 2020", "20-10-2020"])
def test_published_must_be_iso(published):
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        ArticleRecord.model_validate(record(published=published))


def test_extra_fields_are_rejected():
    with pytest.raises(ValidationError):
        ArticleRecord.model_validate(record(mood="tense"))
