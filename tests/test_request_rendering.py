"""Backend.structured sends the messages verbatim (no Jinja templating by instructor, which would
alter or fail on an article containing "{{" or "{%") and wraps each response model for instructor
once, not per call."""
import importlib
import json

import instructor
import openai

from summarizer import Summarizer
from summarizer.backends.base import tool_model
from summarizer.drafts import ActorsDraft, sentence_model
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
