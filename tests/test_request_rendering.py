"""Backend.structured sends the messages verbatim (no Jinja templating by instructor, which would
alter or fail on an article containing "{{" or "{%"), wraps each response model for instructor
once, not per call, and sends exactly what instructor.patch and the typed SDK method would send,
on the sync and the async path."""
import asyncio
import importlib
import json

import instructor
import openai
import pytest
from openai.types.chat import ChatCompletion

from summarizer import ExtractionError, Summarizer
from summarizer.backends.base import Backend, tool_model
from summarizer.drafts import ActorsDraft, ExtractionContext, current_extraction, sentence_model
from summarizer.testing import ScriptedServer, tool_reply


def test_an_article_with_template_markup_is_sent_and_quoted_verbatim():
    text = ("Talks\n\nThe Valmont government said it wanted {{ peace }} in the region.\r\n"
            "Ostrava urged Valmont to withdraw {% raw %} from the sector {# now #}.\n")
    with ScriptedServer() as server:
        s = Summarizer("openai", "scripted", base_url=server.url, api_key="x", cache=False)
        record = s.summarize(text)
        requests = server.requests
    assert record.grounding_errors(text) == []
    quotes = " ".join(x.evidence.quote for x in record.positions + record.demands)
    assert "{{ peace }}" in quotes
    system = requests[0]["messages"][0]["content"]
    assert "{{ peace }}" in system and "{% raw %}" in system and "{# now #}" in system


def test_a_response_model_is_wrapped_once_with_instructors_tool_schema():
    model = sentence_model(["Valmont", "Ostrava"])
    assert tool_model(model) is tool_model(model)
    assert tool_model(tool_model(model)) is tool_model(model)
    for m in (model, ActorsDraft):
        assert issubclass(tool_model(m), m) and tool_model(m).__name__ == m.__name__
        assert (instructor.generate_openai_schema(tool_model(m))
                == instructor.generate_openai_schema(instructor.openai_schema(m)))


def test_the_openai_backend_sends_what_the_typed_sdk_method_sends():
    from summarizer.backends.openai import OpenAIBackend

    try:  # the HTTP library this openai version is built on (httpx2 since openai 3, httpx before)
        http = importlib.import_module("httpx2")
    except ImportError:
        http = importlib.import_module("httpx")

    seen, reply = [], tool_reply({"type": "none"}).body

    def answer(request):
        seen.append((dict(request.headers), json.loads(request.content)))
        return http.Response(200, json=reply)

    client = openai.OpenAI(api_key="sk-test", base_url="http://endpoint/v1", max_retries=0,
                           http_client=http.Client(transport=http.MockTransport(answer)))
    backend = OpenAIBackend("m", base_url="http://endpoint/v1", api_key="sk-test")
    backend.client = client
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "Statement", "arguments": "{}"}}]}
    kwargs = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, call,
                           {"role": "tool", "tool_call_id": "call_0", "name": "Statement", "content": "fix it"}],
              "tools": [{"type": "function", "function": instructor.generate_openai_schema(tool_model(ActorsDraft))}],
              "tool_choice": {"type": "function", "function": {"name": "ActorsDraft"}},
              "temperature": 0.0, "max_tokens": 1024, "seed": 0}
    ours = backend._create(**kwargs)
    typed = client.chat.completions.create(model="m", **kwargs)
    assert ours == typed
    (h1, b1), (h2, b2) = seen
    assert b1 == b2 and h1 == h2 and h1["authorization"] == "Bearer sk-test"


class Recorder(Backend):
    """A backend that records each request and answers from a list of replies (the last repeats)."""

    def __init__(self, replies, mode):
        super().__init__()
        self.replies, self.mode, self.seen = replies, mode, []

    def _create(self, **kwargs):
        self.seen.append(json.loads(json.dumps(kwargs)))
        return ChatCompletion.model_validate(self.replies[min(len(self.seen), len(self.replies)) - 1].body)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON])
@pytest.mark.parametrize("which", ["actors", "statement"])
def test_structured_sends_exactly_what_instructor_patch_sends_re_asks_included(which, mode):
    """Backend.structured prepares a response model's request once, then runs instructor's retry loop:
    every request (and so every response-cache key) is the one instructor.patch would send."""
    text = "Talks\n\nThe Valmont government said it wanted peace. Ostrava urged Valmont to withdraw.\n"
    model, replies = {  # an invalid answer first (re-asked), then a valid one
        "actors": (ActorsDraft, [tool_reply({"actors": [["Atlantis", "state", None, None]]}),
                                 tool_reply({"actors": [["Valmont", "state", None, None]]})]),
        "statement": (sentence_model(["Valmont", "Ostrava"]),
                      [tool_reply({"type": "position", "actor": "Nobody", "topic": "x"}), tool_reply({"type": "none"})]),
    }[which]
    messages = [{"role": "system", "content": "<article>\n[1] The Valmont government said it wanted peace.\n"},
                {"role": "user", "content": "Task"}]
    ours, theirs = Recorder(replies, mode), Recorder(replies, mode)
    try:
        ours.structured(messages, model, ExtractionContext(text), max_retries=2)
    except ExtractionError:
        pass  # JSON mode cannot parse these tool-call replies: the re-asks are what is compared
    patched = instructor.patch(create=theirs._create, mode=mode)
    token = current_extraction.set(ExtractionContext(text, max_attempts=3))
    try:
        patched(messages=messages, response_model=tool_model(model), max_retries=2, **theirs._request_kwargs())
    except Exception:  # noqa: BLE001 - same as above
        pass
    finally:
        current_extraction.reset(token)
    assert len(ours.seen) >= 2 and ours.seen == theirs.seen


def test_the_async_openai_backend_sends_what_the_typed_sdk_method_sends():
    from summarizer.backends.openai import OpenAIBackend

    try:
        http = importlib.import_module("httpx2")
    except ImportError:
        http = importlib.import_module("httpx")

    seen, reply = [], tool_reply({"type": "none"}).body

    async def answer(request):
        seen.append((dict(request.headers), json.loads(request.content)))
        return http.Response(200, json=reply)

    client = openai.AsyncOpenAI(api_key="sk-test", base_url="http://endpoint/v1", max_retries=0,
                                http_client=http.AsyncClient(transport=http.MockTransport(answer)))
    backend = OpenAIBackend("m", base_url="http://endpoint/v1", api_key="sk-test")
    backend._new_async_client = lambda concurrency: client
    kwargs = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
              "tools": [{"type": "function", "function": instructor.generate_openai_schema(tool_model(ActorsDraft))}],
              "tool_choice": {"type": "function", "function": {"name": "ActorsDraft"}},
              "temperature": 0.0, "max_tokens": 1024, "seed": 0}

    async def both():
        ours = await backend._acreate(**kwargs)
        typed = await client.chat.completions.create(model="m", **kwargs)
        await client.close()
        return ours, typed

    ours, typed = asyncio.run(both())
    assert ours == typed
    (h1, b1), (h2, b2) = seen
    assert b1 == b2 and h1 == h2 and h1["authorization"] == "Bearer sk-test"
