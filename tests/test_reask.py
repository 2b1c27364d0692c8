"""Re-ask and drop of ungrounded items, and transport retries, against a real loopback server."""
import time

import pytest

from summarizer import ExtractionError, Summarizer
from summarizer.testing import ScriptedServer, error_reply, tool_reply

GOOD_ACTORS = {"actors": [
    {"name": "Valmont", "kind": "state", "country": "Valmont", "mention": "The Valmont government"},
    {"name": "Ostrava", "kind": "state", "country": "Ostrava", "mention": None}]}
S1 = {"type": "demand", "actor": "Valmont", "topic": "troops"}
S2 = {"type": "position", "actor": "Ostrava", "topic": "troops"}
NONE = {"type": "none"}
GOOD_STATEMENTS = [tool_reply(S1), tool_reply(S2), tool_reply(NONE)]


def by_tool(actors: list, statements: list):
    """Reply per tool in order (the last reply repeats)."""
    seen = {"ActorsDraft": 0, "Statement": 0}

    def reply(request):
        name = request["tools"][0]["function"]["name"]
        script = actors if name == "ActorsDraft" else statements
        i = seen[name]
        seen[name] += 1
        return script[min(i, len(script) - 1)]
    return reply


def run(server, text, **kw):
    s = Summarizer("openai", "scripted", base_url=server.url, api_key="x", **kw)
    try:
        return s.summarize(text)
    finally:
        s.close()


def test_happy_path_is_grounded(short_text):
    with ScriptedServer(by_tool([tool_reply(GOOD_ACTORS)], GOOD_STATEMENTS)) as srv:
        rec = run(srv, short_text)
    assert [a.name for a in rec.actors] == ["Valmont", "Ostrava"]
    d = rec.demands[0]
    assert (d.actor, d.addressees) == ("Valmont", ["Ostrava"])
    assert short_text[d.evidence.start:d.evidence.end] == d.evidence.quote
    assert d.evidence.quote == "The Valmont government urged Ostrava to withdraw its troops from the border."
    assert rec.positions[0].actor == "Ostrava" and rec.positions[0].stance == "the troops were on exercises"
    assert d.action == "withdraw its troops from the border"
    assert rec.provenance.attempts == 4 and rec.provenance.retries == 0  # actors + 3 sentences
    assert rec.provenance.usage.prompt_tokens == 400
    assert [f.value for f in rec.figures] == [300.0]


def test_ungrounded_actors_are_reasked_with_the_error(short_text):
    bad = {"actors": [dict(GOOD_ACTORS["actors"][0], name="Republic of Valmont", mention="Valmont City")]}
    with ScriptedServer(by_tool([tool_reply(bad), tool_reply(GOOD_ACTORS)], GOOD_STATEMENTS)) as srv:
        rec = run(srv, short_text)
        reask = srv.requests[1]["messages"]
    assert "Valmont City" in str(reask[-1]) and "are words of the article" in str(reask[-1])
    assert rec.actors[0].mentions == ["Valmont", "The Valmont government"]
    assert rec.provenance.retries == 1 and rec.provenance.dropped == {}


def test_still_ungrounded_after_retries_is_dropped_and_counted(short_text):
    bad = {"actors": [dict(GOOD_ACTORS["actors"][0], name="Republic of Valmont", mention="Valmont City")]}
    with ScriptedServer(by_tool([tool_reply(bad)], [tool_reply(NONE)])) as srv:
        rec = run(srv, short_text, max_retries=1)
        actor_calls = sum(r["tools"][0]["function"]["name"] == "ActorsDraft" for r in srv.requests)
    assert actor_calls == 2
    assert rec.actors == [] and rec.positions == [] and rec.demands == []
    assert rec.provenance.dropped == {"actors": 1}


def test_ungrounded_actor_beside_grounded_ones_is_dropped_without_a_new_call(short_text):
    bad = {"actors": [dict(GOOD_ACTORS["actors"][0], name="Republic of Valmont", mention="Valmont City"),
                      GOOD_ACTORS["actors"][1]]}
    with ScriptedServer(by_tool([tool_reply(bad)], [tool_reply(NONE)])) as srv:
        rec = run(srv, short_text)
        actor_calls = sum(r["tools"][0]["function"]["name"] == "ActorsDraft" for r in srv.requests)
    assert actor_calls == 1
    assert [a.name for a in rec.actors] == ["Ostrava"]
    assert rec.provenance.dropped == {"actors": 1}


def test_mentions_are_verbatim_forms_of_the_article(short_text):
    actors = {"actors": [dict(GOOD_ACTORS["actors"][0], mention="the valmont government"),
                         dict(GOOD_ACTORS["actors"][1], mention="Ostrava City"),
                         {"name": "Karel Dvorak", "kind": "person", "country": "Valmont", "mention": None}]}
    text = short_text + "Foreign Minister Karel Dvorak said Mr Dvorak would stay. Dvorak left.\n"
    with ScriptedServer(by_tool([tool_reply(actors)], [tool_reply(NONE)])) as srv:
        rec = run(srv, text)
    assert rec.actors[0].mentions == ["Valmont", "The Valmont government"]  # the article's own casing
    assert rec.actors[1].mentions == ["Ostrava"]                            # the invented form is dropped
    assert rec.actors[2].mentions == ["Karel Dvorak", "Dvorak", "Mr Dvorak"]
    assert rec.actors[2].role == "Foreign Minister"
    assert rec.provenance.dropped == {"mentions": 1} and rec.provenance.retries == 0
    assert rec.grounding_errors(text) == []


def test_unknown_holder_is_reasked_then_dropped(short_text):
    bad = {"type": "demand", "actor": "Moscow", "topic": "t"}
    with ScriptedServer(by_tool([tool_reply(GOOD_ACTORS)], [tool_reply(bad)])) as srv:
        rec = run(srv, short_text, max_retries=2)
        calls = [r for r in srv.requests if r["tools"][0]["function"]["name"] == "Statement"]
    assert len(calls) == 9  # 3 sentences x 3 attempts
    assert "'Moscow' is not one of the actors" in str(calls[1]["messages"][-1])
    assert rec.demands == [] and rec.positions == []
    assert rec.provenance.dropped == {"demands": 3}


def test_unknown_actor_name_is_reasked(short_text):
    bad = {"type": "demand", "actor": "Moscow", "topic": "t"}
    with ScriptedServer(by_tool([tool_reply(GOOD_ACTORS)], [tool_reply(bad)] + GOOD_STATEMENTS)) as srv:
        rec = run(srv, short_text)
        msgs = [r for r in srv.requests if r["tools"][0]["function"]["name"] == "Statement"][1]["messages"]
    assert "'Moscow' is not one of the actors" in str(msgs[-1])
    assert rec.demands[0].actor == "Valmont"


def test_malformed_json_is_reasked(short_text):
    with ScriptedServer(by_tool([tool_reply('{"actors": [ ["Valmont", '), tool_reply(GOOD_ACTORS)],
                                GOOD_STATEMENTS)) as srv:
        rec = run(srv, short_text)
    assert len(rec.actors) == 2 and rec.provenance.retries == 1


def test_statement_enums_are_in_the_tool_schema(short_text):
    with ScriptedServer(by_tool([tool_reply(GOOD_ACTORS)], GOOD_STATEMENTS)) as srv:
        run(srv, short_text)
        schema = srv.requests[1]["tools"][0]["function"]["parameters"]
    none, position, demand = schema["anyOf"]
    assert none["properties"] == {"type": {"const": "none"}}
    assert position["properties"]["actor"]["enum"] == ["Valmont", "Ostrava"]
    assert demand["properties"]["actor"]["enum"] == ["Valmont", "Ostrava"]
    assert list(position["properties"]) == ["type", "actor", "topic"]
    assert list(demand["properties"]) == ["type", "actor"]  # action and addressees are read from the sentence
    assert srv.requests[1]["tool_choice"]["function"]["name"] == "Statement"


def test_actor_rows_and_the_conversation_the_sentence_calls_continue(short_text):
    rows = {"actors": [["Valmont", "state", "Valmont", "The Valmont government"], ["Ostrava", "state", "Ostrava", None]]}
    with ScriptedServer(by_tool([tool_reply(rows)], GOOD_STATEMENTS)) as srv:
        rec = run(srv, short_text)
        actors_schema = srv.requests[0]["tools"][0]["function"]["parameters"]
        first, second = srv.requests[1]["messages"], srv.requests[2]["messages"]
    row = actors_schema["properties"]["actors"]["items"]
    assert [x.get("enum") for x in row["prefixItems"]][1] == ["person", "state", "organization", "armed_group",
                                                               "group", "other"]
    assert [(a.name, a.kind, a.country) for a in rec.actors] == [("Valmont", "state", "Valmont"),
                                                                ("Ostrava", "state", "Ostrava")]
    # every sentence call repeats the same three opening messages (a shared prefix for the KV cache)
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"] and first[:3] == second[:3]
    assert first[2]["content"] == ('{"actors": [["Valmont", "state", "Valmont", "The Valmont government"], '
                                   '["Ostrava", "state", "Ostrava", null]]}')
    assert "sentence [1] The Valmont government urged Ostrava" in first[3]["content"]
    assert rec.demands[0].addressees == ["Ostrava"]


def test_addressees_are_the_actors_named_after_the_demand_verb():
    from summarizer.drafts import addressees_in
    from summarizer.schema import Actor
    actors = [Actor(name=n, kind="state", mentions=m) for n, m in
              [("Valdoria", ["Valdoria", "Ravenna"]), ("Korsk", ["Korsk"]), ("Free Harbour Brigade", ["the Brigade"])]]
    s = "Valdoria on Tuesday urged the Brigade and Korsk to leave, Ravenna said."
    assert addressees_in(s, actors, "Valdoria") == ["Free Harbour Brigade", "Korsk"]
    assert addressees_in("Korsk must leave, Valdoria said.", actors, "Valdoria") == ["Korsk"]
    assert addressees_in("The fighting must stop, Valdoria said.", actors, "Valdoria") == []


def test_429_is_retried_after_the_requested_delay(short_text):
    script = [error_reply(429, "slow down", retry_after=0.5), tool_reply(GOOD_ACTORS)] + GOOD_STATEMENTS
    with ScriptedServer(script) as srv:
        t0 = time.perf_counter()
        s = Summarizer("openai", "scripted", base_url=srv.url, api_key="x")
        s.summarize(short_text)
        assert time.perf_counter() - t0 >= 0.5
        assert len(srv.requests) == 5
        assert s.backend.transport_attempts == 5


def test_persistent_5xx_ends_in_one_clear_error(short_text):
    with ScriptedServer([error_reply(503, "overloaded")]) as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, api_key="x", transport_retries=2, backoff_max=0.1)
        with pytest.raises(ExtractionError) as info:
            s.summarize(short_text)
        assert len(srv.requests) == 3  # bounded: 1 + 2 retries
    e = info.value
    assert e.kind == "transport" and "503" in str(e) and e.attempts == 1


def test_validation_failure_error_carries_attempts_usage_and_raw(short_text):
    with ScriptedServer([tool_reply('not json at all')]) as srv:
        s = Summarizer("openai", "scripted", base_url=srv.url, api_key="x", max_retries=1)
        with pytest.raises(ExtractionError) as info:
            s.summarize(short_text)
    e = info.value
    assert e.kind == "validation" and e.attempts == 2
    assert e.last_raw == "not json at all"
    assert e.usage["prompt_tokens"] == 200


def test_a_demand_without_a_call_to_act_is_kept_as_a_position(short_text):
    demand = {"type": "demand", "actor": "Ostrava", "topic": "troops"}
    with ScriptedServer(by_tool([tool_reply(GOOD_ACTORS)], [tool_reply(S1), tool_reply(demand), tool_reply(NONE)])) as srv:
        rec = run(srv, short_text)
    assert [d.evidence.quote[:22] for d in rec.demands] == ["The Valmont government"]  # "urged": a demand
    assert [(p.actor, p.stance) for p in rec.positions] == [("Ostrava", "the troops were on exercises")]
