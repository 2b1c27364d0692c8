"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

Transport failures (connection errors, timeouts, 429 honouring Retry-After, 5xx) are
retried with tenacity: exponential backoff with jitter, bounded attempts. The SDK's
own retries are off so there is exactly one retry policy, the same for the sync
(`openai.OpenAI`, tenacity `Retrying`) and the async path (`openai.AsyncOpenAI`,
`AsyncRetrying`; one client and connection pool per event loop).
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

import instructor
import openai
from openai.types.chat import ChatCompletion
from tenacity import (
    AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random,
)

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
        self.timeout = timeout if timeout is not None else float(os.environ.get("SUMMARIZER_TIMEOUT", "120"))
        self._key = key
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        self.transport_attempts = 0
        self._aclient: openai.AsyncOpenAI | None = None  # the async client of the loop in _aloop
        self._aloop: asyncio.AbstractEventLoop | None = None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = _retry_after(exc)
        # exponential backoff with jitter, capped (wait_exponential + wait_random: stable across tenacity versions)
        base = min(self.backoff_max, wait_exponential(multiplier=min(0.5, self.backoff_max), max=self.backoff_max)(state)
                   + wait_random(0, min(1.0, self.backoff_max))(state))
        return max(after, base) if after is not None else base

    def _retrying(self, cls: type[Retrying] | type[AsyncRetrying] = Retrying) -> Any:
        """The one transport retry policy (retryable errors, Retry-After, capped backoff with jitter, bounded)."""
        return cls(stop=stop_after_attempt(self.transport_retries + 1), wait=self._wait,
                   retry=retry_if_exception(_retryable), reraise=True)

    def _create(self, **kwargs: Any) -> Any:
        kwargs["model"] = self.model_id
        try:
            for attempt in self._retrying():
                with attempt:
                    self.transport_attempts += 1
                    return self._post(kwargs)
        except openai.APIError as e:
            raise TransportError(f"{type(e).__name__}: {e}") from e

    async def _acreate(self, **kwargs: Any) -> Any:
        kwargs["model"] = self.model_id
        try:
            async for attempt in self._retrying(AsyncRetrying):
                with attempt:
                    self.transport_attempts += 1
                    return await self._apost(kwargs)
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

    async def _apost(self, body: dict) -> ChatCompletion:
        """`_post` on the running loop's AsyncOpenAI client."""
        client = self._async_client()
        if body.get("stream"):
            return await client.chat.completions.create(**body)
        return await client.post("/chat/completions", body=body, cast_to=ChatCompletion,
                                 options={"security": {"bearer_auth": True}})

    def _async_client(self, concurrency: int | None = None) -> openai.AsyncOpenAI:
        """The AsyncOpenAI client of the running event loop, made on first use there.

        An async connection pool belongs to the loop that opened its connections, so a client
        is reused for every call on one loop (a batch) and replaced when a call comes from a
        new loop (e.g. successive `asyncio.run`).
        """
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            self._aclient, self._aloop = self._new_async_client(concurrency), loop
        return self._aclient

    def _new_async_client(self, concurrency: int | None) -> openai.AsyncOpenAI:
        """An AsyncOpenAI client; with `concurrency` (a batch, see `astart`), on a pool that keeps a
        connection per concurrent request, over aiohttp when installed (the SDK's documented
        option: a third less client CPU per request than httpx's async pool, measured at
        concurrency 32). Without it (a bare `asummarize` on some loop), the SDK's default
        client, which cleans up after itself when its loop ends."""
        http_client = None
        if concurrency:
            defaults = openai.DEFAULT_CONNECTION_LIMITS  # of the SDK's own httpx flavour
            limits = type(defaults)(max_connections=max(concurrency, defaults.max_connections or 0),
                                    max_keepalive_connections=max(concurrency, defaults.max_keepalive_connections or 0),
                                    keepalive_expiry=defaults.keepalive_expiry)
            try:
                http_client = openai.DefaultAioHttpClient(limits=limits)
            except (RuntimeError, ImportError, AttributeError):  # aiohttp (or this SDK's support for it) missing
                http_client = openai.DefaultAsyncHttpxClient(limits=limits)
        return openai.AsyncOpenAI(api_key=self._key, base_url=self.base_url, timeout=self.timeout, max_retries=0,
                                  http_client=http_client)

    async def astart(self, concurrency: int = 1) -> None:
        """Open this loop's async client with a connection pool for `concurrency` requests at a time."""
        await self.aclose()
        await super().astart(concurrency)
        self._async_client(concurrency)

    async def aclose(self) -> None:
        """Close this loop's async client (its connections); a client of another, finished loop is dropped."""
        await super().aclose()
        client, loop = self._aclient, self._aloop
        self._aclient = self._aloop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.close()

    @property
    def context_window(self) -> int:
        return self._context_window

    def close(self) -> None:
        self.client.close()
        self._aclient = self._aloop = None  # its loop has ended or closes it (aclose)
