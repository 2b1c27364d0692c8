"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

Transport failures (connection errors, timeouts, 429 honouring Retry-After, 5xx) are
retried with tenacity: exponential backoff with jitter, bounded attempts. The SDK's
own retries are off so there is exactly one retry policy.
"""
from __future__ import annotations

import os
from typing import Any

import instructor
import openai
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from .base import Backend, TransportError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _retryable(e: BaseException) -> bool:
    if isinstance(e, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    return isinstance(e, openai.APIStatusError) and e.status_code in RETRYABLE_STATUS


def _retry_after(e: BaseException | None) -> float | None:
    resp = getattr(e, "response", None)
    value = resp.headers.get("retry-after") if resp is not None else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions endpoint."""

    name = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, transport_retries: int = 4, backoff_max: float | None = None,
                 mode: str | None = None, context_window: int | None = None, **kw: Any):
        super().__init__(**kw)
        self._context_window = context_window or int(os.environ.get("SUMMARIZER_CONTEXT_WINDOW", "32768"))
        self.model_id = model or os.environ.get("SUMMARIZER_MODEL") or "gpt-4o-mini"
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("sk-none" if self.base_url else None)
        if key is None:
            raise ValueError("the openai backend needs OPENAI_API_KEY (or --base-url for a local server)")
        self.mode = instructor.Mode(mode) if mode else instructor.Mode.TOOLS
        self.transport_retries = transport_retries
        self.backoff_max = backoff_max if backoff_max is not None else float(os.environ.get("SUMMARIZER_BACKOFF_MAX", "30"))
        timeout = timeout if timeout is not None else float(os.environ.get("SUMMARIZER_TIMEOUT", "120"))
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0)
        self.transport_attempts = 0

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = _retry_after(exc)
        # exponential backoff with jitter, capped (wait_exponential + wait_random: stable across tenacity versions)
        base = min(self.backoff_max, wait_exponential(multiplier=min(0.5, self.backoff_max), max=self.backoff_max)(state)
                   + wait_random(0, min(1.0, self.backoff_max))(state))
        return max(after, base) if after is not None else base

    def _create(self, **kwargs: Any) -> Any:
        kwargs["model"] = self.model_id
        retrying = Retrying(stop=stop_after_attempt(self.transport_retries + 1), wait=self._wait,
                            retry=retry_if_exception(_retryable), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    self.transport_attempts += 1
                    return self._post(kwargs)
        except openai.APIError as e:
            raise TransportError(f"{type(e).__name__}: {e}") from e

    def _post(self, body: dict) -> ChatCompletion:
        """POST /chat/completions: what `client.chat.completions.create(**body)` sends (same headers,
        auth, timeout, error types, parsed reply), without its walk of the request through the SDK's
        TypedDicts (maybe_transform), a third of the client's CPU per call at concurrency 32, which
        hands plain JSON like ours back unchanged."""
        if body.get("stream"):
            return self.client.chat.completions.create(**body)
        return self.client.post("/chat/completions", body=body, cast_to=ChatCompletion,
                                options={"security": {"bearer_auth": True}})

    @property
    def context_window(self) -> int:
        return self._context_window

    def close(self) -> None:
        self.client.close()
