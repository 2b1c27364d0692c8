"""The schema-guided decoder on a small scripted language model (fast; the real model is in test_local).

`Scripted` is a stand-in for llama_cpp.Llama with a tiny vocabulary whose logits always
favour the longest token that continues a target text. A valid target must come out
exactly; an invalid one (prose, an unknown actor, a too long string, too many items)
must still come out valid under the schema.
"""
import ctypes
import json
from typing import Literal

import numpy as np
import pytest
from pydantic import BaseModel, Field

from summarizer.backends import guided
from summarizer.drafts import ActorsDraft, sentence_model

try:
    from instructor import openai_schema
except ImportError:  # older instructor
    from instructor.function_calls import openai_schema

WORDS = [b'{"', b'":', b' "', b'",', b'"]', b'"],', b' [[', b' ["', b'"}', b' [', b']]', b'"]]', b'[[',
         b'type', b'none', b'position', b'demand', b'actor', b'topic', b'actors', b'Russia', b' talks',
         b'person', b'state', b'null', b' null', b'Sure', b' here', b' is', b' a', b' poem', b'count', b'42']


class _Ctx:
    def __init__(self, llm):
        self.llm = llm

    def kv_cache_seq_rm(self, seq, p0, p1):
        self.llm.n_tokens = min(self.llm.n_tokens, p0)
        return True

    def get_logits_ith(self, i):
        return self.llm.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class Scripted:
    """Just enough of llama_cpp.Llama for the decoder; it 'wants' to write `target` after the prompt."""

    def __init__(self, target: str, ctx: int = 4096):
        self.pieces = [b""] + [bytes([c]) for c in range(32, 127)] + WORDS
        self._summarizer_vocab = guided.Vocab.from_pieces(self.pieces)
        self.target = target.encode()
        self.input_ids = np.zeros(ctx, dtype=np.intc)
        self.n_tokens = 0
        self._ctx = _Ctx(self)
        self._n_ctx = ctx
        self.evals: list[int] = []
        self.prompt_len = 0
        self.logits = np.zeros(len(self.pieces), dtype=np.float32)

    @property
    def _input_ids(self):
        return self.input_ids[: self.n_tokens]

    def n_ctx(self):
        return self._n_ctx

    def n_vocab(self):
        return len(self.pieces)

    def tokenize(self, text: bytes, add_bos=False, special=False):
        out, i = [], 0
        while i < len(text):
            best = max((j for j, p in enumerate(self.pieces) if p and text.startswith(p, i)),
                       key=lambda j: len(self.pieces[j]))
            out.append(best)
            i += len(self.pieces[best])
        return out

    def eval(self, tokens):
        self.evals.append(len(tokens))
        self.input_ids[self.n_tokens: self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)
        written = b"".join(self.pieces[t] for t in self._input_ids[self.prompt_len:])
        rest = self.target[len(written):] if self.target.startswith(written) else b""
        self.logits[:] = -5.0 - np.arange(len(self.pieces)) * 1e-4  # fixed, arbitrary preferences
        self.logits[self.tokenize(b"x")[0]] = -1.0                  # off target: babble "x"
        for j, p in enumerate(self.pieces):
            if p and rest.startswith(p):
                self.logits[j] = len(p)

    def run(self, model: type[BaseModel], prompt: str = "PROMPT", max_tokens: int = 400):
        prompt_ids = self.tokenize(prompt.encode())
        self.prompt_len = len(prompt_ids)
        program = guided.compile_schema(openai_schema(model).openai_schema["parameters"])
        value, ses = program.run(self, prompt_ids, max_tokens)
        return value, ses


STATEMENT = sentence_model(["Russia", "Russian Foreign Ministry"])


def test_a_valid_target_comes_out_exactly_with_fewer_model_passes_than_tokens():
    target = '{"type": "position", "actor": "Russia", "topic": "wants talks"}'
    llm = Scripted(target)
    value, ses = llm.run(STATEMENT)
    assert json.dumps(value) == target
    answer_tokens = len(llm.tokenize(target.encode()))
    assert len(llm.evals) - 1 < answer_tokens  # fixed text rides along with the next decision
    STATEMENT.model_validate(value)


def test_the_type_choice_is_read_from_the_prompt_pass():
    llm = Scripted('{"type": "none"}')
    value, ses = llm.run(STATEMENT)
    assert value == {"type": "none"}
    assert llm.evals == [len(llm.tokenize(b"PROMPT")) + len(llm.tokenize(b'{"type": "'))]  # one pass, no decode steps


def test_prose_still_gives_a_schema_valid_answer():
    llm = Scripted("Sure, here is a poem about Paris: roses are red")
    value, _ = llm.run(STATEMENT)
    obj = STATEMENT.model_validate(value)
    assert obj.type in ("none", "position", "demand")


def test_an_actor_outside_the_enum_cannot_be_written():
    llm = Scripted('{"type": "demand", "actor": "Ukraine", "topic": "ceasefire"}')
    value, _ = llm.run(STATEMENT)
    assert value["type"] == "demand" and value["actor"] in ("Russia", "Russian Foreign Ministry")


def test_max_length_and_max_items_are_enforced():
    long_topic = '{"type": "position", "actor": "Russia", "topic": "' + "talks " * 30 + '"}'
    value, _ = Scripted(long_topic).run(STATEMENT)
    assert len(value["topic"]) <= 40

    rows = ", ".join(f'["Actor {i}", "state", null, null]' for i in range(20))
    value, _ = Scripted('{"actors": [' + rows + "]}").run(ActorsDraft)
    assert len(value["actors"]) == 14 and value["actors"][0] == ["Actor 0", "state", None, None]
    ActorsDraft.model_validate(value)


def test_rows_with_nulls_and_merged_closing_tokens():
    target = '{"actors": [["Russia", "state", null, "Moscow"], ["Sergei Lavrov", "person", "Russia", null]]}'
    value, _ = Scripted(target).run(ActorsDraft)
    assert json.dumps(value) == target


class Counted(BaseModel):
    answer: Literal["zebra-42", "quokka-7"]
    count: int
    ratio: float = Field(description="any number")


def test_numbers_and_literals():
    target = '{"answer": "quokka-7", "count": -42, "ratio": 4.2}'
    value, _ = Scripted(target).run(Counted)
    assert json.dumps(value) == target
    value, _ = Scripted("no numbers here").run(Counted)
    obj = Counted.model_validate(value)
    assert isinstance(obj.count, int)


def test_the_kv_prefix_of_the_previous_answer_is_reused():
    llm = Scripted('{"type": "none"}')
    llm.run(STATEMENT, prompt="PROMPT one")
    before = len(llm.evals)
    llm.run(STATEMENT, prompt="PROMPT two")
    one, two = llm.tokenize(b"PROMPT one"), llm.tokenize(b"PROMPT two")
    shared = next(i for i, (a, b) in enumerate(zip(one, two)) if a != b)
    assert shared > 0 and llm.evals[before] == len(two) - shared + len(llm.tokenize(b'{"type": "'))


def test_a_prompt_longer_than_the_context_is_refused():
    llm = Scripted('{"type": "none"}', ctx=8)
    with pytest.raises(guided.ContextFull):
        llm.run(STATEMENT, prompt="a prompt much longer than eight tokens")


def test_unsupported_schemas_are_refused_at_compile_time():
    with pytest.raises(guided.Unsupported):
        guided.compile_schema({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}})
    with pytest.raises(guided.Unsupported):
        guided.compile_schema({"type": "object", "properties": {"n": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}})
    with pytest.raises(guided.Unsupported):
        guided.compile_schema({"type": "array", "items": {"type": "string"}})


def test_auto_picks_guided_for_one_object_and_the_grammar_for_lists(monkeypatch):
    """The default decoder choice per schema, and a cache key that says which decoder answered."""
    from summarizer.backends.local import LocalBackend

    monkeypatch.delenv("SUMMARIZER_DECODER", raising=False)
    b = LocalBackend()  # the model file is resolved, not loaded
    assert b.decoder == "auto"
    sentence = openai_schema(sentence_model(["Russia", "Armenia"])).openai_schema["parameters"]
    actors = openai_schema(ActorsDraft).openai_schema["parameters"]
    assert b._decoder_for(sentence, 0.0) == "guided"
    assert b._decoder_for(actors, 0.0) == "grammar"
    assert b._decoder_for(sentence, 0.7) == "grammar"  # sampling goes through llama.cpp
    request = lambda schema: {"tools": [{"type": "function", "function": {"name": "x", "parameters": schema}}],
                              "temperature": 0.0}
    # a list decoded by the grammar stops at a repeated row (loopguard.py): its own key
    assert b.cache_identity(request(actors)) == {**b.identity, "stop": "repeated-row"}
    assert b.cache_identity(request(sentence)) == {**b.identity, "decoder": "guided"}
    b.decoder = "grammar"
    assert b._decoder_for(sentence, 0.0) == "grammar" and b.cache_identity(request(sentence)) == b.identity
    b.decoder = "guided"
    assert b._decoder_for(actors, 0.0) == "guided"
    monkeypatch.setenv("SUMMARIZER_DECODER", "fast")
    with pytest.raises(ValueError, match="SUMMARIZER_DECODER must be one of auto, guided, grammar"):
        LocalBackend()


def test_the_grammar_keeps_json_strings_free_of_raw_control_characters():
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from summarizer.backends.local import json_string_chars

    with_strings = json_schema_to_gbnf(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}))
    fixed = json_string_chars(with_strings)
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |' in fixed and fixed != with_strings
    LlamaGrammar.from_string(fixed, verbose=False)  # still a valid grammar
    no_strings = json_schema_to_gbnf(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}}))
    assert json_string_chars(no_strings) == no_strings
    with pytest.raises(RuntimeError):
        json_string_chars(with_strings.replace('char ::= [^"\\\\] |', 'char ::= [^"] |'))
