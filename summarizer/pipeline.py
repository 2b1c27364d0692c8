"""Article text → grounded ArticleRecord.

Per chunk of numbered sentences (one chunk unless the article exceeds the context):
1. actors call: actors with verbatim mentions (re-asked, then dropped if ungrounded);
2. one short call per candidate sentence, continuing the same conversation: is it a
   demand, a position or neither, with actor names constrained to the actors of step 1;
then figures are read deterministically, chunks are merged, and every quote is checked
against the raw text before the record is returned.

The steps are written once, as a generator that yields model requests (messages, response
model, extraction context), the independent ones together (a chunk's sentence calls), and
receives their answers; `summarize` drives it with the backend's blocking call, one request
after another, `asummarize` with its async call, sending independent requests concurrently.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Generator

from pydantic import BaseModel

from . import __version__
from .backends import Backend, CallStats, ExtractionError, get_backend
from .cache import ResponseCache, default_cache_dir
from .drafts import ActorsDraft, ExtractionContext, actors_answer, sentence_model, to_actors, to_statements
from .figures import extract_figures
from .templates import Prompts, load_prompts
from .schema import Actor, ArticleRecord, Demand, Position, Provenance, Usage
from .text import Article, Sentence, looks_like_code, parse_article

_TOOL_OVERHEAD = 700  # tokens for the tool schema and chat template around the system prompt

# One model request of the pipeline: (messages, response model, extraction context); the driver
# answers it with the backend's (object, CallStats). A Steps generator yields lists of requests that
# do not depend on each other (one actors call; a chunk's sentence calls), receives their answers in
# the same order, and returns the article's record.
Request = tuple[list[dict], type[BaseModel], ExtractionContext]
Answer = tuple[BaseModel, CallStats]
Steps = Generator[list[Request], list[Answer], ArticleRecord]


_CUE = re.compile(
    r"[\"“”]|\b(?:said|says|say|told|tells|stated|states|added|argued|insist\w*|warn\w*|urg\w*|call\w*|"
    r"demand\w*|ask\w*|accus\w*|den(?:y|ied|ies)|claim\w*|believ\w*|hope\w*|want\w*|expect\w*|must|should|"
    r"need\w*|reject\w*|refus\w*|critici[sz]\w*|condemn\w*|welcom\w*|backed|backs|backing|support\w*|oppos\w*|"
    r"agree\w*|propos\w*|pledg\w*|promis\w*|vow\w*|threat\w*|announc\w*|declar\w*|confirm\w*|"
    r"reiterat\w*|stress\w*|express\w*|blam\w*|urg\w*|suggest\w*|"
    r"object\w*|appeal\w*|dismiss\w*|insist\w*|acknowledg\w*|admit\w*|"
    r"intend\w*|seek\w*|sought|argu\w*|think\w*|consider\w*)\b",
    re.I)


def is_candidate(sentence: str) -> bool:
    """Whether a sentence can state a demand or position (a quotation or a reporting/stance word, not code)."""
    return bool(_CUE.search(sentence)) and not looks_like_code(sentence)


class ArticleError(ValueError):
    """The input cannot be summarised (empty, binary, not text)."""

    kind = "input"


class Summarizer:
    """Reusable extractor: loads the backend (and model) once, summarises many articles."""

    def __init__(self, backend: str | Backend = "local", model: str | None = None, *,
                 base_url: str | None = None, api_key: str | None = None, max_retries: int = 2,
                 prompts_dir: str | None = None, temperature: float = 0.0, max_tokens: int = 1024,
                 cache: bool | str | Path = True, **backend_options: Any):
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            opts = dict(backend_options, temperature=temperature, max_tokens=max_tokens)
            if model:
                opts["model"] = model
            if backend == "openai":
                opts.update(base_url=base_url, api_key=api_key)
            self.backend = get_backend(backend, **opts)
        self.prompts: Prompts = load_prompts(prompts_dir)
        self.backend.prime(self.prompts.opening())
        if cache:
            self.backend.cache = ResponseCache(default_cache_dir() if cache is True else cache)
        self.max_retries = max_retries

    @property
    def identity(self) -> dict:
        """Everything that determines the output besides the article (for resume and caches)."""
        b = self.backend
        return {"backend": b.name, "model": b.model_id, "model_sha256": b.model_sha256,
                "prompt_version": self.prompts.version, "decoding": b.decoding,
                "max_retries": self.max_retries, "schema_version": ArticleRecord.model_fields["schema_version"].default,
                "summarizer_version": __version__}

    # -- chunking -----------------------------------------------------------------------
    def _chunks(self, article: Article) -> list[list[Sentence]]:
        sents = article.sentences
        if not sents:
            return []
        base = self.backend.count_tokens(self.prompts.system_for("")) + _TOOL_OVERHEAD
        budget = self.backend.context_window - base - self.backend.max_tokens
        if budget <= 200:
            raise ExtractionError(f"context window {self.backend.context_window} too small for the prompt",
                                  kind="config")
        cost = [self.backend.count_tokens(f"[{s.n}] {s.text}\n") for s in sents]
        if sum(cost) <= budget:
            return [sents]
        chunks, cur, used, last_cost = [], [], 0, 0
        for s, c in zip(sents, cost):
            if cur and used + c > budget:
                chunks.append(cur)
                cur, used = [cur[-1]], last_cost  # one sentence of overlap
            cur.append(s)
            used += c
            last_cost = c
        chunks.append(cur)
        return chunks

    # -- one chunk ----------------------------------------------------------------------
    def _ask(self, requests: list[tuple[list[dict], type[BaseModel]]], article: Article, usage: Usage,
             dropped: Counter) -> Generator[list[Request], list[Answer], list[BaseModel]]:
        """Independent model requests, yielded to the driver together; their usage and dropped items are counted."""
        ctxs = [ExtractionContext(article.text) for _ in requests]
        answers = yield [(messages, model, ctx) for (messages, model), ctx in zip(requests, ctxs)]
        for (_, st), ctx in zip(answers, ctxs):
            usage.add(st.prompt_tokens, st.completion_tokens, st.attempts)
            dropped.update(ctx.dropped)
            dropped["_calls"] += 1
            dropped["_fresh"] += ctx.fresh
        return [obj for obj, _ in answers]

    def _chunk(self, article: Article, sents: list[Sentence], usage: Usage,
               dropped: Counter) -> Generator[list[Request], list[Answer], tuple]:
        """One conversation per chunk: the actors call, then one short turn per candidate sentence.

        Every call starts with the same messages (system with the article, the actors request and
        the actors answer), so a local model keeps them in its KV cache and reads only the new
        sentence turn; instructions and the few-shot example live in the system message.
        """
        system = {"role": "system", "content": self.prompts.system_for(article.numbered(sents))}
        ask = {"role": "user", "content": self.prompts.actors}
        draft, = yield from self._ask([([system, ask], ActorsDraft)], article, usage, dropped)
        actors = to_actors(draft)
        if not actors:
            return [], [], []
        answer = {"role": "assistant", "content": actors_answer(draft)}
        model = sentence_model([a.name for a in actors])
        candidates = [sent for sent in sents if is_candidate(sent.text)]
        turns = [{"role": "user", "content": self.prompts.statements.substitute(sentence=f"[{sent.n}] {sent.text}")}
                 for sent in candidates]
        drafts = yield from self._ask([([system, ask, answer, turn], model) for turn in turns], article, usage, dropped)
        positions: list[Position] = []
        demands: list[Demand] = []
        for sent, sdraft in zip(candidates, drafts):
            p, d = to_statements(sdraft, sent, actors)
            positions += p
            demands += d
        return actors, positions, demands

    # -- one article --------------------------------------------------------------------
    def _steps(self, text: str) -> Steps:
        """The whole pipeline for one article, yielding its model requests in order (see the module doc)."""
        if not isinstance(text, str):
            raise ArticleError(f"article must be str, got {type(text).__name__}")
        if "\x00" in text:
            raise ArticleError("article contains NUL bytes: it looks binary, not text")
        if not text.strip():
            raise ArticleError("article is empty or whitespace only: nothing to summarise (fill or remove the file)")
        t0 = time.perf_counter()
        article = parse_article(text)
        usage, dropped = Usage(), Counter()
        chunks = self._chunks(article)
        actors: list[Actor] = []
        positions: list[Position] = []
        demands: list[Demand] = []
        for sents in chunks:
            a, p, d = yield from self._chunk(article, sents, usage, dropped)
            rename = _merge_actors(actors, a)
            positions += [x.model_copy(update={"actor": rename[x.actor]}) for x in p]
            demands += [x.model_copy(update={"actor": rename[x.actor],
                                             "addressees": list(dict.fromkeys(rename[n] for n in x.addressees))})
                        for x in d]
        positions = _dedupe(positions, lambda x: (x.evidence.start, x.actor, x.stance.casefold()))
        demands = _dedupe(demands, lambda x: (x.evidence.start, x.actor, x.action.casefold()))
        figures = extract_figures(article)
        calls = usage.model_calls
        retries = calls - dropped.pop("_calls", 0)
        fresh = dropped.pop("_fresh", 0)  # this article's model-made responses (per call, so right under concurrency)
        prov = Provenance(
            backend=self.backend.name, model=self.backend.model_id, model_sha256=self.backend.model_sha256,
            prompt_version=self.prompts.version, decoding=self.backend.decoding, usage=usage,
            attempts=calls, retries=retries, dropped=dict(dropped),
            latency_s=round(time.perf_counter() - t0, 3), article_sha256=article.sha256,
            chunks=len(chunks), cached=self.backend.cache is not None and fresh == 0 and calls > 0,
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            summarizer_version=__version__,
        )
        record = ArticleRecord(headline=article.headline, published=article.published,
                               summary=_lead(article), actors=actors, positions=positions,
                               demands=demands, figures=figures, provenance=prov)
        errors = record.grounding_errors(text)
        if errors:  # a bug guard: every path above builds evidence from offsets
            raise ExtractionError("ungrounded record: " + "; ".join(errors[:5]), kind="grounding")
        return record

    # -- public -------------------------------------------------------------------------
    def summarize(self, text: str) -> ArticleRecord:
        """Summarise one article's raw text into a validated, grounded ArticleRecord."""
        steps = self._steps(text)
        try:
            requests = next(steps)
            while True:
                requests = steps.send([self.backend.structured(*r, self.max_retries) for r in requests])
        except StopIteration as done:
            return done.value

    async def asummarize(self, text: str) -> ArticleRecord:
        """Async `summarize`: the same steps and record, each model call awaited on the running event loop.

        Remote backends send their requests with an async client, so many articles can run
        concurrently on one loop (`asyncio.gather`, or `batch.summarize_folder(concurrency=N)`),
        and an article's sentence calls, which do not depend on each other, are sent together
        (`astart(n)` holds the loop to n requests in flight); backends without async calls
        (local) run each call in a worker thread, one after another.
        """
        steps = self._steps(text)
        try:
            requests = next(steps)
            while True:
                requests = steps.send(await self._aanswer(requests))
        except StopIteration as done:
            return done.value

    async def _aanswer(self, requests: list[Request]) -> list[Answer]:
        """Independent requests, sent concurrently by a backend with async calls (one at a time, in
        order, by one without: a local model answers one request at a time anyway). On a failure the
        others are cancelled and the failure is raised."""
        if len(requests) <= 1 or not self.backend.supports_async:
            return [await self.backend.astructured(*r, self.max_retries) for r in requests]
        tasks = [asyncio.ensure_future(self.backend.astructured(*r, self.max_retries)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def astart(self, concurrency: int) -> None:
        """Hold `asummarize` calls on the running event loop to `concurrency` model requests in flight."""
        await self.backend.astart(concurrency)

    async def aclose(self) -> None:
        """Close the connections `asummarize` opened on the running event loop (call before the loop ends)."""
        await self.backend.aclose()

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()


def _lead(article: Article) -> str:
    """Extractive summary: the opening body sentences, at most 3 and ~400 characters."""
    out: list[str] = []
    for s in article.sentences[:3]:
        if out and len(" ".join(out)) + len(s.text) > 400:
            break
        out.append(s.text)
    return " ".join(out)


def _norm(s: str) -> str:
    return " ".join(s.casefold().replace("the ", "").split())


def _merge_actors(actors: list[Actor], new: list[Actor]) -> dict[str, str]:
    """Merge a chunk's actors into `actors` in place; return the chunk-name → record-name map."""
    rename = {}
    for a in new:
        keys = {_norm(a.name)} | {_norm(m) for m in a.mentions}
        match = next((b for b in actors if _norm(b.name) == _norm(a.name)), None)
        if match is None:
            match = next((b for b in actors if b.kind == a.kind and
                          keys & ({_norm(b.name)} | {_norm(m) for m in b.mentions})), None)
        if match is None:
            actors.append(a.model_copy())
            rename[a.name] = a.name
        else:
            match.mentions = list(dict.fromkeys(match.mentions + a.mentions))
            match.role = match.role or a.role
            match.country = match.country or a.country
            rename[a.name] = match.name
    return rename


def _dedupe(items: list, key) -> list:
    seen, out = set(), []
    for x in items:
        k = key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


_DEFAULT: dict[tuple, Summarizer] = {}
_DEFAULT_LOCK = threading.Lock()


def summarize(text: str, **options: Any) -> ArticleRecord:
    """Summarise one article; options are Summarizer's (backend, model, base_url, ...).

    The Summarizer for a given set of options is created once and reused.
    """
    key = tuple(sorted((k, repr(v)) for k, v in options.items()))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = Summarizer(**options)
        s = _DEFAULT[key]
    return s.summarize(text)
