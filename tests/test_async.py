"""The asyncio path (`Summarizer.asummarize`, `Backend.astructured`, the folder batch at concurrency > 1)
against the real loopback server: the same records, re-asks, cache entries and errors as the sync path,
and never more requests in flight than the concurrency asked for."""
import asyncio
import threading
import time

import pytest

from summarizer import ArticleRecord, ExtractionError, Summarizer
from summarizer.backends.base import Backend
from summarizer.backends.openai import OpenAIBackend
from summarizer.batch import summarize_folder
from summarizer.testing import Faults, InFlight, ScriptedServer, heuristic_reply, tool_reply

TEXTS = [f"Talks {i}\n\nThe Valmont government said it wanted peace in round {i}. "
         f"Ostrava urged Valmont to withdraw from sector {i}.\nAbout {300 + i} people fled, officials said.\n"
         for i in range(5)]
LONG = "Long talks\n\n" + " ".join(f"Valmont said point {i} was agreed." for i in range(300)) + "\n"


def comparable(record) -> dict:
    """A record without what differs between two runs of the same work (timings, timestamp)."""
    d = record.model_dump()
    for k in ("latency_s", "created_at"):
        d["provenance"].pop(k)
    return d


def summarizer(server, **kw) -> Summarizer:
    return Summarizer("openai", "scripted", base_url=server.url, api_key="x", **{"cache": False, **kw})


def sync_records(script, texts, **kw):
    with ScriptedServer(script()) as srv:
        s = summarizer(srv, **kw)
        return [s.summarize(t) for t in texts], len(srv.requests)


def async_records(script, texts, **kw):
    async def main(s):
        try:
            return await asyncio.gather(*(s.asummarize(t) for t in texts))
        finally:
            await s.aclose()

    with ScriptedServer(script()) as srv:
        return asyncio.run(main(summarizer(srv, **kw))), len(srv.requests)


async def summarize_and_close(s, text):
    try:
        return await s.asummarize(text)
    finally:
        await s.aclose()


SCRIPTS = {  # each builds a fresh script: the same replies for the sync and the async run
    "plain": lambda: heuristic_reply,
    "reasked": lambda: Faults({"Valmont": "ungrounded"}, times=1),   # an invented actor, re-asked once
    "schema": lambda: Faults({"Valmont": "schema"}, times=2),        # two schema violations, then valid
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_async_gives_the_same_records_as_sync(name):
    texts = TEXTS[:1] if name != "plain" else TEXTS  # a fault script's counter is per server, so one article
    sync, n_sync = sync_records(SCRIPTS[name], texts)
    asyn, n_async = async_records(SCRIPTS[name], texts)
    assert n_sync == n_async
    assert [comparable(r) for r in sync] == [comparable(r) for r in asyn]
    for r, t in zip(asyn, texts):
        assert r.grounding_errors(t) == [] and r.actors and r.provenance.attempts >= 3
    if name != "plain":
        assert asyn[0].provenance.retries >= 1  # the re-asks are counted the same way


def test_a_long_article_is_split_and_merged_the_same_way():
    (sync,), _ = sync_records(SCRIPTS["plain"], [LONG], context_window=4096, max_tokens=256)
    (asyn,), _ = async_records(SCRIPTS["plain"], [LONG], context_window=4096, max_tokens=256)
    assert asyn.provenance.chunks > 1 and comparable(asyn) == comparable(sync)


def test_the_async_path_reads_the_response_cache_the_sync_path_wrote(tmp_path):
    with ScriptedServer() as srv:
        first = summarizer(srv, cache=tmp_path / "c").summarize(TEXTS[0])
        calls = len(srv.requests)

        second = asyncio.run(summarize_and_close(summarizer(srv, cache=tmp_path / "c"), TEXTS[0]))
        assert len(srv.requests) == calls  # every call answered from the cache
    assert not first.provenance.cached and second.provenance.cached
    a, b = comparable(first), comparable(second)
    a["provenance"].pop("cached"), b["provenance"].pop("cached")
    assert a == b


def test_async_errors_carry_kind_attempts_usage_and_the_last_raw_output():
    one = summarize_and_close
    with ScriptedServer(Faults({"Valmont": "schema"})) as srv:
        with pytest.raises(ExtractionError) as info:
            asyncio.run(one(summarizer(srv, max_retries=2), TEXTS[0]))
    e = info.value
    assert e.kind == "validation" and e.attempts == 3 and e.usage["prompt_tokens"] == 300
    assert e.last_raw == '{"actors": "none", "type": 42}'

    with ScriptedServer(Faults({"Valmont": "server_error"})) as srv:
        s = summarizer(srv, backoff_max=0.05)
        with pytest.raises(ExtractionError) as info:
            asyncio.run(one(s, TEXTS[0]))
        assert len(srv.requests) == 5 and s.backend.transport_attempts == 5  # 1 try + 4 transport retries
    assert info.value.kind == "transport" and "InternalServerError" in str(info.value)


def test_rate_limits_are_retried_after_the_requested_delay():
    with ScriptedServer(Faults({"Valmont": "rate_limit"}, times=1, retry_after=0.5)) as srv:
        s = summarizer(srv, backoff_max=0.05)
        t0 = time.monotonic()
        rec = asyncio.run(summarize_and_close(s, TEXTS[0]))
        assert time.monotonic() - t0 >= 0.5  # Retry-After honoured over the (shorter) backoff
    assert rec.actors and s.backend.transport_attempts == rec.provenance.attempts + 1


class SyncOnly(OpenAIBackend):
    """An OpenAI backend without an async create, like the local backend: astructured falls back to a thread."""

    _acreate = Backend._acreate

    def _create(self, **kwargs):
        self.threads = getattr(self, "threads", set()) | {threading.get_ident()}
        return super()._create(**kwargs)


def test_a_backend_without_async_create_runs_the_sync_call_in_a_thread():
    with ScriptedServer() as srv:
        backend = SyncOnly("scripted", base_url=srv.url, api_key="x")
        s = Summarizer(backend, cache=False)
        assert not backend.supports_async and summarizer(srv).backend.supports_async
        rec = asyncio.run(summarize_and_close(s, TEXTS[0]))
        expected = summarizer(srv).summarize(TEXTS[0])
    assert threading.get_ident() not in backend.threads
    assert comparable(rec) == comparable(expected)


def test_a_folder_batch_keeps_at_most_concurrency_requests_in_flight(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(12):
        (inp / f"a{i:02d}.txt").write_text(TEXTS[i % 5].replace("round", f"batch {i} round"))
    script = InFlight()
    with ScriptedServer(script) as srv:
        result = summarize_folder(inp, tmp_path / "out", summarizer(srv), concurrency=3)
    assert result.count("done") == 12
    assert 1 < script.peak <= 3


def test_without_aiohttp_a_batch_sends_over_httpx(tmp_path, monkeypatch):
    import openai

    def missing(**kwargs):
        raise RuntimeError("To use the aiohttp client you must have installed the package with the `aiohttp` extra")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(4):
        (inp / f"a{i}.txt").write_text(TEXTS[i])
    with ScriptedServer() as srv:
        s = summarizer(srv)
        result = summarize_folder(inp, tmp_path / "out", s, concurrency=2)
        expected = [comparable(s.summarize(t)) for t in TEXTS[:4]]
    assert result.count("done") == 4
    written = [comparable(ArticleRecord.model_validate_json((tmp_path / "out" / f"a{i}.json").read_text()))
               for i in range(4)]
    for record in written + expected:  # set by the batch, not by summarize
        record["provenance"].pop("run_key"), record["provenance"].pop("source")
    assert written == expected


MANY = ("Talks\n\n" + " ".join(f"The Valmont government said point {i} was agreed." for i in range(8)) + "\n")


def test_an_articles_sentence_calls_go_out_together_within_the_slots_astart_sets():
    async def main(s, slots):
        await s.astart(slots)
        return await summarize_and_close(s, MANY)

    for slots, expected_peak in ((4, 4), (1, 1)):
        script = InFlight()
        with ScriptedServer(script) as srv:
            rec = asyncio.run(main(summarizer(srv), slots))
            sync = summarizer(srv).summarize(MANY)
        assert script.peak == expected_peak  # 8 sentence calls of one article, at most `slots` at once
        assert comparable(rec) == comparable(sync) and len(rec.positions) == 8


def test_a_failing_sentence_call_cancels_its_siblings_and_fails_the_article():
    class FailOnSentence(InFlight):
        def __call__(self, request):
            if any("sentence [3]" in str(m.get("content")) for m in request["messages"] if m["role"] == "user"):
                return tool_reply({"type": 42})  # never valid: fails after its re-asks
            return super().__call__(request)

    left = []

    async def main(s):
        await s.astart(8)
        try:
            return await summarize_and_close(s, MANY)
        finally:
            left.extend(t for t in asyncio.all_tasks() if t is not asyncio.current_task())

    with ScriptedServer(FailOnSentence()) as srv:
        with pytest.raises(ExtractionError) as info:
            asyncio.run(main(summarizer(srv, max_retries=1)))
    assert info.value.kind == "validation" and info.value.attempts == 2
    assert left == []  # the other sentence calls were cancelled and awaited, none left running


def test_the_cached_flag_is_per_article_when_cached_and_fresh_articles_run_together(tmp_path):
    async def both(s):
        await s.astart(8)
        try:
            return await asyncio.gather(s.asummarize(TEXTS[0]), s.asummarize(TEXTS[1]))
        finally:
            await s.aclose()

    with ScriptedServer(InFlight()) as srv:  # replies take 50 ms: the two articles overlap
        summarizer(srv, cache=tmp_path / "c").summarize(TEXTS[0])
        cached, fresh = asyncio.run(both(summarizer(srv, cache=tmp_path / "c")))
    assert cached.provenance.cached and not fresh.provenance.cached
