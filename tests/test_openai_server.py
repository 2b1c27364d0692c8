"""The openai backend end to end against a real OpenAI-compatible server on 127.0.0.1
(llama-cpp-python's server on the embedded model), started by the test."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from summarizer import Summarizer
from summarizer.models import model_path

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+b")  # a file: a full pipe would block it
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
                             "--model_alias", "embedded"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"llama.cpp server exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        log.seek(0)
        pytest.fail(f"llama.cpp server did not start in 180 s: {log.read().decode(errors='replace')[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_openai_backend_against_a_real_server(server, short_text):
    s = Summarizer("openai", "embedded", base_url=server, cache=False)
    rec = s.summarize(short_text)
    s.close()
    assert rec.provenance.backend == "openai" and rec.provenance.model == "embedded"
    assert rec.grounding_errors(short_text) == []
    assert rec.actors, "no actors"
    assert rec.provenance.usage.prompt_tokens > 0
    assert [f.value for f in rec.figures] == [300.0]
    names = {a.name for a in rec.actors}
    for item in rec.positions + rec.demands:
        assert item.actor in names


def test_async_variant(server, short_text):
    import asyncio

    s = Summarizer("openai", "embedded", base_url=server, cache=False)
    rec = asyncio.run(s.asummarize(short_text))
    assert rec.grounding_errors(short_text) == []
