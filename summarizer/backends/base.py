"""The backend interface: one method that turns chat messages into a validated pydantic object.

A backend only supplies `_create(**kwargs)`, an OpenAI-style chat completion call; the
shared `structured()` runs it through instructor (tool-call parsing, validation,
re-ask with the error text) and records attempts, token usage and the last raw output.
It composes instructor's own building blocks as `instructor.patch` does (request
preparation, then the re-asking retry loop) but prepares each response model's request
(tool definitions, tool choice) once instead of on every call: that preparation was two
thirds of instructor's CPU per call.
A backend that also supplies `_acreate(**kwargs)` (a coroutine) gets the same through
`astructured()` on the event loop; for the others `astructured()` runs `structured()`
in a worker thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

import instructor
from instructor.core import retry_async, retry_sync
from instructor.processing.response import handle_response_model
from pydantic import BaseModel

from ..drafts import ExtractionContext, current_extraction

log = logging.getLogger(__name__)


class TransportError(RuntimeError):
    """The backend could not be reached or kept failing after bounded retries."""


class ExtractionError(RuntimeError):
    """A model call failed for good; carries attempts, token usage and the last raw output."""

    def __init__(self, message: str, kind: str = "extraction", attempts: int = 0,
                 usage: dict | None = None, last_raw: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts
        self.usage = usage or {}
        self.last_raw = last_raw


@dataclass
class CallStats:
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    raw: list[str] = field(default_factory=list)


def _raw_of(response: Any) -> str:
    try:
        msg = response.choices[0].message
        if getattr(msg, "tool_calls", None):
            return msg.tool_calls[0].function.arguments
        return msg.content or ""
    except Exception:  # noqa: BLE001 - best effort for diagnostics only
        return repr(response)[:2000]


@functools.lru_cache(maxsize=256)
def tool_model(response_model: type[BaseModel]) -> type[BaseModel]:
    """`response_model` wrapped as instructor wraps it for a call, made once per model class.

    instructor would build a new wrapper class on every call, which also misses its own
    per-class cache of the tool's JSON schema; given the same wrapper it reuses both.
    """
    if issubclass(response_model, instructor.ResponseSchema):
        return response_model
    return instructor.openai_schema(response_model)


@functools.lru_cache(maxsize=256)
def _request_template(response_model: type[BaseModel], mode: instructor.Mode) -> tuple[type[BaseModel], dict | None]:
    """instructor's preparation of a request for `response_model` (the model it parses into and the
    request keys it adds: tools, tool choice, ...), made once; None for the keys when the mode also
    rewrites the messages (e.g. JSON modes put the schema into them), which then is done per call."""
    probe = [{"role": "user", "content": "?"}]
    model, kwargs = handle_response_model(tool_model(response_model), mode=mode, messages=list(probe))
    if kwargs.get("messages") != probe:
        return model, None
    return model, {k: v for k, v in kwargs.items() if k != "messages"}


class Backend(ABC):
    """A model behind an OpenAI-style chat completion call."""

    name: str = "base"
    model_id: str = ""
    model_sha256: str | None = None
    mode: instructor.Mode = instructor.Mode.TOOLS

    def __init__(self, temperature: float = 0.0, max_tokens: int = 1024, seed: int = 0):
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None  # see astart

    @property
    def decoding(self) -> dict:
        """Decoding parameters recorded in provenance and cache keys."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
                "mode": self.mode.value}

    @abstractmethod
    def _create(self, **kwargs: Any) -> Any:
        """Send one chat completion request; return an OpenAI ChatCompletion-shaped object."""

    def prime(self, opening_text: str) -> None:
        """Hint: every later prompt's system message starts with `opening_text`. A backend with a
        prompt cache may precompute it (the local backend keeps its KV state on disk); others ignore it."""

    def count_tokens(self, text: str) -> int:
        """Approximate token count (backends with a tokenizer override this)."""
        return len(text) // 3 + 1

    @property
    def context_window(self) -> int:
        return 32768

    @property
    def supports_async(self) -> bool:
        """Whether this backend has a native async create (`_acreate`), so `astructured` runs on the event loop."""
        return type(self)._acreate is not Backend._acreate

    def structured(self, messages: list[dict], response_model: type[BaseModel],
                   ctx: ExtractionContext, max_retries: int = 2) -> tuple[BaseModel, CallStats]:
        """Ask for `response_model`; re-ask on validation errors up to max_retries times."""
        model, kwargs = self._prepare(messages, response_model)
        with self._call(ctx, max_retries, response_model) as (stats, hooks):
            obj = retry_sync(func=self._cached_create, response_model=model, args=(), kwargs=kwargs,
                             max_retries=max_retries, strict=True, mode=self.mode, hooks=hooks)
        return obj, stats

    async def astructured(self, messages: list[dict], response_model: type[BaseModel],
                          ctx: ExtractionContext, max_retries: int = 2) -> tuple[BaseModel, CallStats]:
        """Async `structured`: same re-asks, hooks, cache and errors, through `_acreate` on the event loop.

        A backend without `_acreate` runs `structured` in a worker thread instead.
        """
        if not self.supports_async:
            return await asyncio.to_thread(self.structured, messages, response_model, ctx, max_retries)
        model, kwargs = self._prepare(messages, response_model)
        slots = self._slots[1] if self._slots and self._slots[0] is asyncio.get_running_loop() else None
        async with slots or contextlib.nullcontext():
            with self._call(ctx, max_retries, response_model) as (stats, hooks):
                obj = await retry_async(func=self._cached_acreate, response_model=model, args=(), kwargs=kwargs,
                                        max_retries=max_retries, strict=True, mode=self.mode, hooks=hooks)
        return obj, stats

    @contextlib.contextmanager
    def _call(self, ctx: ExtractionContext, max_retries: int,
              response_model: type[BaseModel]) -> Iterator[tuple[CallStats, instructor.hooks.Hooks]]:
        """One structured call's stats and hooks, its timing, and any failure as one ExtractionError.

        Validators find ctx through current_extraction, not instructor's context=: given a context,
        instructor renders every message as a Jinja template, which costs CPU on every call and
        alters (or fails on) an article that contains "{{", "{%" or "{#". Messages go out verbatim.
        The variable is per thread and per asyncio task (each task runs in its own context copy).
        """
        stats, hooks = self._begin(ctx, max_retries)
        t0 = time.perf_counter()
        token = current_extraction.set(ctx)
        try:
            yield stats, hooks
        except Exception as e:  # noqa: BLE001 - normalised into one exception type
            raise _failure(e, response_model, stats, t0) from e
        finally:
            current_extraction.reset(token)
        stats.seconds = time.perf_counter() - t0

    def _prepare(self, messages: list[dict], response_model: type[BaseModel]) -> tuple[type[BaseModel], dict]:
        """The model instructor parses into and the request to send: what `instructor.patch` prepares."""
        model, template = _request_template(response_model, self.mode)
        if template is None:
            return handle_response_model(tool_model(response_model), mode=self.mode, messages=list(messages),
                                         **self._request_kwargs())
        return model, {"messages": list(messages), **self._request_kwargs(), **template}

    @staticmethod
    def _begin(ctx: ExtractionContext, max_retries: int) -> tuple[CallStats, instructor.hooks.Hooks]:
        """Fresh stats for one structured call and the instructor hooks that fill them in."""
        stats = CallStats()
        ctx.max_attempts = max_retries + 1
        ctx.attempt = 0

        def on_kwargs(*args, **kwargs):
            ctx.attempt += 1
            stats.attempts = ctx.attempt

        def on_response(response):
            stats.raw.append(_raw_of(response))
            usage = getattr(response, "usage", None)
            if usage is not None:
                stats.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                stats.completion_tokens += getattr(usage, "completion_tokens", 0) or 0

        hooks = instructor.hooks.Hooks()
        hooks.on("completion:kwargs", on_kwargs)
        hooks.on("completion:response", on_response)
        return stats, hooks

    cache = None  # a ResponseCache, set by the Summarizer

    @property
    def identity(self) -> dict:
        """What identifies the model for caching."""
        return {"backend": self.name, "model": self.model_id, "sha256": self.model_sha256}

    def cache_identity(self, request: dict) -> dict:
        """What identifies the model for caching this request (a backend may key requests apart)."""
        return self.identity

    def _cached_create(self, **kwargs: Any) -> Any:
        key, hit = self._cache_lookup(kwargs)
        if hit is not None:
            return hit
        response = self._create(**kwargs)
        self._cache_store(key, response)
        _count_fresh()
        return response

    async def _cached_acreate(self, **kwargs: Any) -> Any:
        key, hit = self._cache_lookup(kwargs)
        if hit is not None:
            return hit
        response = await self._acreate(**kwargs)
        self._cache_store(key, response)
        _count_fresh()
        return response

    def _cache_lookup(self, kwargs: dict) -> tuple[str | None, Any]:
        """(cache key, cached response or None); no key without a cache."""
        if self.cache is None:
            return None, None
        from openai.types.chat import ChatCompletion

        request = {k: v for k, v in kwargs.items() if k not in ("stream",)}
        key = self.cache.key(self.cache_identity(request), request)
        hit = self.cache.get(key)
        return key, (ChatCompletion.model_validate(hit) if hit is not None else None)

    def _cache_store(self, key: str | None, response: Any) -> None:
        if key is None:
            return
        try:
            self.cache.put(key, response.model_dump(mode="json"))
        except OSError as e:  # a cache that cannot be written must not fail the call
            log.warning("response cache not written (%s): %s", self.cache.directory, e)

    async def _acreate(self, **kwargs: Any) -> Any:
        """Async `_create`, for backends that have one (see `supports_async`)."""
        raise NotImplementedError

    def _request_kwargs(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    async def astart(self, concurrency: int = 1) -> None:
        """Prepare async calls on the running event loop for `concurrency` requests at a time, and
        hold them to that: from now on an `astructured` call on this loop waits for a free slot."""
        self._slots = (asyncio.get_running_loop(), asyncio.Semaphore(max(1, concurrency)))

    async def aclose(self) -> None:
        """Release what async calls opened on the running event loop (e.g. its connection pool)."""
        self._slots = None

    def close(self) -> None:
        """Release resources (models, connections)."""


def _count_fresh() -> None:
    """Count a response the model made (a cache miss) on the running call's ExtractionContext."""
    ctx = current_extraction.get()
    if ctx is not None:
        ctx.fresh += 1


def _failure(e: Exception, response_model: type[BaseModel], stats: CallStats, t0: float) -> ExtractionError:
    """A failed structured call as one ExtractionError: transport or validation, with attempts, usage, raw."""
    stats.seconds = time.perf_counter() - t0
    cause = e.__cause__ or e
    kind = "transport" if isinstance(cause, TransportError) else "validation"
    return ExtractionError(
        f"{response_model.__name__}: {cause}", kind=kind, attempts=stats.attempts,
        usage={"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens},
        last_raw=stats.raw[-1] if stats.raw else None,
    )
