"""The embedded backend: llama-cpp-python in-process, output constrained by a grammar.

instructor's TOOLS mode sends the response model as a forced tool call; llama-cpp-python
turns the tool's JSON schema into a GBNF grammar, so the model can only emit JSON of
that shape (enums included). JSON_SCHEMA mode is not grammar-constrained in-process.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import instructor

from ..models import resolve
from . import lazygrammar
from .base import Backend, TransportError

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
                 n_batch: int | None = None, **kw: Any):
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

    @property
    def llm(self):
        if self._llm is None:
            self._llm = load_llama(self.path, self.n_ctx, self.n_threads, self.n_batch)
        return self._llm

    @property
    def decoding(self) -> dict:
        return {**super().decoding, "n_ctx": self.n_ctx}

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _create(self, **kwargs: Any) -> Any:
        kwargs.pop("model", None)
        kwargs.pop("stream", None)
        with self._lock:
            try:
                return self.llm.create_chat_completion_openai_v1(**kwargs)
            except ValueError as e:  # e.g. prompt longer than the context window
                raise TransportError(f"local model refused the request: {e}") from e
