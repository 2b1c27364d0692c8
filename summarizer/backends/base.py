"""The backend interface: one method that turns chat messages into a validated pydantic object.

A backend only supplies `_create(**kwargs)`, an OpenAI-style chat completion call; the
shared `structured()` runs it through instructor (tool-call parsing, validation,
re-ask with the error text) and records attempts, token usage and the last raw output.
"""
from __future__ import annotations

import functools
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import instructor
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

    @property
    def decoding(self) -> dict:
        """Decoding parameters recorded in provenance and cache keys."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
                "mode": self.mode.value}

    @abstractmethod
    def _create(self, **kwargs: Any) -> Any:
        """Send one chat completion request; return an OpenAI ChatCompletion-shaped object."""

    def count_tokens(self, text: str) -> int:
        """Approximate token count (backends with a tokenizer override this)."""
        return len(text) // 3 + 1

    @property
    def context_window(self) -> int:
        return 32768

    def structured(self, messages: list[dict], response_model: type[BaseModel],
                   ctx: ExtractionContext, max_retries: int = 2) -> tuple[BaseModel, CallStats]:
        """Ask for `response_model`; re-ask on validation errors up to max_retries times."""
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
        if getattr(self, "_patched", None) is None:
            self._patched = instructor.patch(create=self._cached_create, mode=self.mode)
        create = self._patched
        t0 = time.perf_counter()
        # Validators find ctx through current_extraction, not instructor's context=: given a context,
        # instructor renders every message as a Jinja template, which costs CPU on every call and
        # alters (or fails on) an article that contains "{{", "{%" or "{#". Messages go out verbatim.
        token = current_extraction.set(ctx)
        try:
            obj = create(messages=messages, response_model=tool_model(response_model), max_retries=max_retries,
                         hooks=hooks, **self._request_kwargs())
        except Exception as e:  # noqa: BLE001 - normalised into one exception type
            stats.seconds = time.perf_counter() - t0
            cause = e.__cause__ or e
            kind = "transport" if isinstance(cause, TransportError) else "validation"
            raise ExtractionError(
                f"{response_model.__name__}: {cause}", kind=kind, attempts=stats.attempts,
                usage={"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens},
                last_raw=stats.raw[-1] if stats.raw else None,
            ) from e
        finally:
            current_extraction.reset(token)
        stats.seconds = time.perf_counter() - t0
        return obj, stats

    cache = None  # a ResponseCache, set by the Summarizer

    @property
    def identity(self) -> dict:
        """What identifies the model for caching."""
        return {"backend": self.name, "model": self.model_id, "sha256": self.model_sha256}

    def _cached_create(self, **kwargs: Any) -> Any:
        if self.cache is None:
            return self._create(**kwargs)
        from openai.types.chat import ChatCompletion

        request = {k: v for k, v in kwargs.items() if k not in ("stream",)}
        key = self.cache.key(self.identity, request)
        hit = self.cache.get(key)
        if hit is not None:
            return ChatCompletion.model_validate(hit)
        response = self._create(**kwargs)
        try:
            self.cache.put(key, response.model_dump(mode="json"))
        except OSError as e:  # a cache that cannot be written must not fail the call
            log.warning("response cache not written (%s): %s", self.cache.directory, e)
        return response

    def _request_kwargs(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    def close(self) -> None:
        """Release resources (models, connections)."""
