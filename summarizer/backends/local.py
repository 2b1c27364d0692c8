"""The embedded backend: llama-cpp-python in-process, output constrained by a grammar.

instructor's TOOLS mode sends the response model as a forced tool call. This backend
turns the tool's JSON schema into a GBNF grammar (compiled once per schema), so the
model can only emit JSON of that shape (enums included). Unlike llama-cpp-python's own
chat handler it does not print the tool's JSON schema into the prompt: the grammar
already enforces the shape and the prompt's example shows it, and leaving the schema
out saves a few hundred prompt tokens per call and keeps the prompt prefix identical
across calls, so llama.cpp reuses its KV cache. (instructor's JSON_SCHEMA mode is not
grammar-constrained in-process; TOOLS is what this backend honours.)
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import instructor

from ..models import cache_dir, resolve
from . import guided, lazygrammar, loopguard, opening
from .base import Backend, TransportError

DECODERS = ("auto", "guided", "grammar")
_LOADED: dict[tuple, Any] = {}
_LOAD_LOCK = threading.Lock()


def default_threads() -> int:
    """Physical parallelism available to this process (SUMMARIZER_THREADS overrides)."""
    env = os.environ.get("SUMMARIZER_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def load_llama(path: str, n_ctx: int, n_threads: int, n_batch: int):
    """Load a GGUF once per process and parameters; later calls reuse it."""
    key = (path, n_ctx, n_threads, n_batch)
    with _LOAD_LOCK:
        if key not in _LOADED:
            from llama_cpp import Llama  # imported lazily: loading the library is slow

            llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads,
                        n_threads_batch=n_threads, n_batch=n_batch, verbose=False, seed=0)
            if os.environ.get("SUMMARIZER_FULL_GRAMMAR") != "1":
                lazygrammar.install(llm)  # same greedy output, far less work per token
            _LOADED[key] = llm
        return _LOADED[key]


class LocalBackend(Backend):
    """llama-cpp-python in-process on an embedded model name or a GGUF path."""

    name = "local"
    mode = instructor.Mode.TOOLS

    def __init__(self, model: str | None = None, n_ctx: int | None = None, n_threads: int | None = None,
                 n_batch: int | None = None, kv_dir: str | Path | None = None, **kw: Any):
        super().__init__(**kw)
        path, sha, model_id = resolve(model)
        self.path = str(path)
        self.model_id = model_id
        self.model_sha256 = sha
        self.n_ctx = n_ctx or int(os.environ.get("SUMMARIZER_N_CTX", "8192"))
        self.n_threads = n_threads or default_threads()
        self.n_batch = n_batch or int(os.environ.get("SUMMARIZER_N_BATCH", "512"))
        self._lock = threading.Lock()
        self._llm = None
        self._grammars: dict[str, Any] = {}
        self._programs: dict[str, Any] = {}
        self._formatter = None
        # the shared prompt opening's KV state on disk (see opening.py): kv_dir, else $SUMMARIZER_KV_DIR, else
        # kv/ in the cache folder; SUMMARIZER_KV_CACHE=0 turns it off
        if kv_dir is None and os.environ.get("SUMMARIZER_KV_CACHE", "1") != "0":
            kv_dir = os.environ.get("SUMMARIZER_KV_DIR") or cache_dir() / "kv"
        self.kv_dir = Path(kv_dir) if kv_dir else None
        self._opening: str | None = None
        self.opening_stats: dict | None = None  # what the first call of this process did with the opening
        # auto (the default): the guided decoder for answers of one object (a sentence's statement,
        # mostly text the schema fixes), the llama.cpp grammar for answers holding a list (the actor
        # rows, mostly free text: guided saved little there and scored actors F1 0.534 against 0.576,
        # evals/reports/eval-embedded-guided.json)
        self.decoder = os.environ.get("SUMMARIZER_DECODER", "auto")
        if self.decoder not in DECODERS:
            raise ValueError(f"SUMMARIZER_DECODER must be one of {', '.join(DECODERS)}, not {self.decoder!r}")

    @property
    def llm(self):
        if self._llm is None:
            self._llm = load_llama(self.path, self.n_ctx, self.n_threads, self.n_batch)
        return self._llm

    @property
    def decoding(self) -> dict:
        return {**super().decoding, "n_ctx": self.n_ctx, "decoder": self.decoder}

    def cache_identity(self, request: dict) -> dict:
        """The model, plus "guided" when this request is decoded by the guided decoder, or the repeated-row
        stop when it is a list decoded by the grammar: those answer differently, so they are cached apart."""
        tools = request.get("tools") or []
        schema = tools[0]["function"]["parameters"] if len(tools) == 1 else None
        if schema is None:
            return self.identity
        if self._decoder_for(schema, request.get("temperature")) == "guided":
            return {**self.identity, "decoder": "guided"}
        # a list answer stops at its first repeated row (loopguard.py): cached apart from answers decoded without
        return {**self.identity, "stop": "repeated-row"} if _has_array(schema) else self.identity

    def _decoder_for(self, schema: dict, temperature: float | None) -> str:
        """Which decoder answers a tool call with this schema: guided or grammar."""
        if self.decoder == "grammar" or temperature or (self.decoder == "auto" and _has_array(schema)):
            return "grammar"
        return "guided" if self._program(schema) is not None else "grammar"

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        """Prompt text as the model's tokens (chat-template markers as special tokens)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def render(self, messages: list[dict]) -> str:
        """The prompt text for chat messages (the model's own chat template, no tool listing)."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self.llm
            eos = llm._model.token_get_text(llm.token_eos())
            self._formatter = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                                  eos_token=eos, bos_token="")
        return self._formatter(messages=messages).prompt

    def prime(self, opening_text: str) -> None:
        """Every prompt's system message starts with `opening_text`: on the first call of the process
        its KV state is restored from disk (or computed once and saved there)."""
        self._opening = opening_text

    def _start_opening(self, llm: Any, prompt: list[int]) -> None:
        """Before the process's first model call: the shared opening's state, if this prompt starts with it."""
        text, self._opening = self._opening, None
        tokens = opening.opening_tokens(self.render, self._tokenize, text)
        if llm.n_tokens or len(tokens) < 2 or prompt[:len(tokens)] != tokens or len(tokens) >= len(prompt):
            return
        path = None
        if self.kv_dir is not None:
            import llama_cpp

            path = opening.state_path(self.kv_dir, {"model": self.model_sha256 or file_identity(self.path),
                                                    "llama_cpp": llama_cpp.__version__, "n_ctx": self.n_ctx,
                                                    "n_batch": self.n_batch}, tokens)
        self.opening_stats = opening.restore_or_build(llm, tokens, path)

    def _grammar(self, schema: dict) -> Any:
        key = json.dumps(schema)  # not sort_keys: property order is the order the grammar enforces
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            self._grammars[key] = LlamaGrammar.from_string(json_string_chars(json_schema_to_gbnf(key)), verbose=False)
        return self._grammars[key]

    def _program(self, schema: dict) -> Any:
        """The schema-guided decoder for `schema`, or None where it is unsupported (grammar fallback)."""
        key = json.dumps(schema)
        if key not in self._programs:
            try:
                self._programs[key] = guided.compile_schema(schema)
            except guided.Unsupported:
                self._programs[key] = None
        return self._programs[key]

    def _create(self, **kwargs: Any) -> Any:
        tools, choice = kwargs.get("tools"), kwargs.get("tool_choice")
        if not tools or not isinstance(choice, dict):
            raise TransportError("the local backend answers forced tool calls only (instructor Mode.TOOLS)")
        name = choice["function"]["name"]
        tool = next((t for t in tools if t["function"]["name"] == name), None)
        if tool is None:
            raise TransportError(f"tool {name!r} not among the tools of the request")
        schema = tool["function"]["parameters"]
        with self._lock:
            llm = self.llm
            prompt = self._tokenize(self.render(kwargs["messages"]))
            if self._opening is not None:
                self._start_opening(llm, prompt)
            if self._decoder_for(schema, kwargs.get("temperature")) == "guided":
                return self._guided(self._program(schema), llm, prompt, name, kwargs.get("max_tokens"))
            grammar = self._grammar(schema)
            guard = loopguard.RepeatGuard(llm, len(prompt)) if _has_array(schema) else None
            try:
                from llama_cpp import StoppingCriteriaList

                out = llm.create_completion(prompt=prompt, grammar=grammar, temperature=kwargs.get("temperature", 0.0),
                                            max_tokens=kwargs.get("max_tokens"), seed=kwargs.get("seed"),
                                            repeat_penalty=1.0,
                                            stopping_criteria=StoppingCriteriaList([guard]) if guard else None)
            except ValueError as e:  # e.g. prompt longer than the context window
                raise TransportError(f"local model refused the request: {e}") from e
        finish, text = out["choices"][0]["finish_reason"], out["choices"][0]["text"]
        if guard is not None and guard.cut is not None:  # the list began to repeat a row: ended before it
            finish, text = "stop", guard.cut
        return _completion(out["id"], self.model_id, name, text, "tool_calls" if finish == "stop" else finish,
                           out["usage"])

    def _guided(self, program: Any, llm: Any, prompt: list[int], name: str, max_tokens: int | None) -> Any:
        try:
            value, _ = program.run(llm, prompt, max_tokens)
            text, finish = json.dumps(value, ensure_ascii=False), "tool_calls"
        except guided.ContextFull as e:
            raise TransportError(f"local model refused the request: {e}") from e
        except guided.Budget:
            text, finish = "", "length"
        completion = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else max_tokens or 0
        usage = {"prompt_tokens": len(prompt), "completion_tokens": completion,
                 "total_tokens": len(prompt) + completion}
        return _completion(f"guided-{time.time_ns()}", self.model_id, name, text, finish, usage)


_ANY_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def json_string_chars(gbnf: str) -> str:
    """llama-cpp-python's JSON-schema grammar with string characters as JSON allows them.

    Its `char` rule admits raw control characters (a newline, a tab, NUL) inside a string,
    which no JSON parser accepts: a model that writes one (seen with the 0.5B model in actor
    names) passes the grammar and fails validation on every re-ask. JSON strings exclude
    U+0000-U+001F (llama.cpp's own converter also excludes DEL); they stay writable as escapes.
    """
    if "char ::=" in gbnf and _ANY_CHAR not in gbnf:  # a schema without strings has no char rule
        raise RuntimeError("unexpected JSON grammar from llama_cpp: its `char` rule changed shape")
    return gbnf.replace(_ANY_CHAR, _JSON_CHAR)


def file_identity(path: str) -> str:
    """A GGUF given by path (no pinned sha256): its name, size and modification time."""
    st = os.stat(path)
    return f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}"


def _has_array(schema: Any) -> bool:
    """Whether a JSON schema (or any part of it) describes an array."""
    if isinstance(schema, dict):
        return schema.get("type") == "array" or any(_has_array(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_array(v) for v in schema)
    return False


def _completion(id_: str, model: str, name: str, arguments: str, finish: str, usage: dict) -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": id_, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_" + id_, "type": "function",
                          "function": {"name": name, "arguments": arguments}}]}}],
        "usage": usage})
