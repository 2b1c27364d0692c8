"""The embedded backend on the real model: constrained output (both decoders) and a real article."""
import json
from typing import Literal

import pytest
from pydantic import BaseModel

from summarizer import Summarizer
from summarizer.drafts import ExtractionContext, sentence_model

pytestmark = pytest.mark.slow


class Odd(BaseModel):
    """An answer the model would never write unconstrained."""

    answer: Literal["zebra-42", "quokka-7"]
    count: int


@pytest.fixture(scope="module")
def summarizer():
    s = Summarizer(cache=False)
    yield s
    s.close()


@pytest.fixture(params=["guided", "grammar"])
def decoder(request, summarizer):
    """The backend with the schema-guided decoder or the llama.cpp grammar (the default, auto, picks one per schema)."""
    b = summarizer.backend
    default, b.decoder = b.decoder, request.param
    yield b
    b.decoder = default


def test_tools_mode_output_is_constrained(decoder):
    b = decoder
    assert b.mode.name == "TOOLS"
    messages = [{"role": "user", "content": "Write a short poem about Paris in plain prose. Do not use JSON."}]
    obj, stats = b.structured(messages, Odd, ExtractionContext(""), max_retries=0)
    raw = json.loads(stats.raw[-1])          # the raw model text is JSON ...
    assert raw["answer"] in ("zebra-42", "quokka-7")  # ... restricted to the enum by the grammar
    assert isinstance(raw["count"], int)
    assert obj.answer == raw["answer"] and stats.attempts == 1


class Poem(BaseModel):
    poem: str


def test_a_free_string_stays_valid_json_when_the_model_wants_line_breaks(summarizer):
    # llama-cpp-python's JSON grammar admits raw control characters in strings: this prompt made the
    # model write raw newlines, which no JSON parser accepts, so the call failed on every attempt.
    # (The grammar decodes the actor rows; the guided decoder's strings are short and bounded.)
    b = summarizer.backend
    messages = [{"role": "user", "content": "Write a four-line poem about Paris, each line on its own line."}]
    default, b.decoder = b.decoder, "grammar"
    try:
        obj, stats = b.structured(messages, Poem, ExtractionContext(""), max_retries=0)
    finally:
        b.decoder = default
    assert stats.attempts == 1 and json.loads(stats.raw[-1])["poem"] == obj.poem
    assert not any(ord(c) < 0x20 for c in stats.raw[-1])


def test_the_prompt_carries_no_tool_listing_and_compiled_schemas_are_reused(decoder):
    b = decoder
    seen = []
    render = b.render
    b.render = lambda messages: seen.append(render(messages)) or seen[-1]
    try:
        for _ in range(2):
            b.structured([{"role": "user", "content": "Pick one."}], Odd, ExtractionContext(""), max_retries=0)
    finally:
        del b.render
    assert len(seen) == 2 and "<tools>" not in seen[0] and seen[0].endswith("<|im_start|>assistant\n")
    compiled = b._programs if b.decoder == "guided" else b._grammars
    assert seen[0] == seen[1] and len(compiled) >= 1 and all(v is not None for v in compiled.values())


def test_guided_decoding_batches_the_fixed_text(summarizer, seed_text):
    """Fewer model passes than answer tokens: braces, keys and enum tails ride along with decisions."""
    b = summarizer.backend
    default, b.decoder = b.decoder, "guided"
    llm = b.llm
    passes = []
    original = llm.eval
    llm.eval = lambda tokens: passes.append(len(tokens)) or original(tokens)
    try:
        messages = [{"role": "user", "content": "Is this a demand, a position or none? " + seed_text[:400]}]
        obj, stats = b.structured(messages, sentence_model(["Russia", "Armenia", "Azerbaijan"]),
                                  ExtractionContext(""), max_retries=0)
    finally:
        llm.eval = original
        b.decoder = default
    answer_tokens = len(llm.tokenize(stats.raw[-1].encode(), add_bos=False))
    assert obj.type in ("none", "position", "demand")
    assert len(passes) - 1 <= answer_tokens - 6, (passes, stats.raw[-1])  # >= 6 fixed tokens not decoded alone


def test_real_article_gives_a_valid_grounded_plausible_record(summarizer, seed_text):
    rec = summarizer.summarize(seed_text)
    assert rec.grounding_errors(seed_text) == []
    names = [a.name for a in rec.actors]
    assert any("Russia" in n for n in names) and "Armenia" in names and "Azerbaijan" in names
    assert rec.demands, "the article's main demand (cease hostilities) is missing"
    assert any("cease hostilities" in d.evidence.quote for d in rec.demands + rec.positions)
    values = {f.value for f in rec.figures}
    assert {18.0, 12.0, 1994.0} <= values
    p = rec.provenance
    assert p.backend == "local" and p.model_sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert p.usage.completion_tokens > 0 and p.attempts >= 2
