"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script, for tests.

Like httpx's MockTransport, it ships with the library so users can test their own code
against it: every request goes through real sockets, the openai SDK and instructor.

    with ScriptedServer([tool_reply({"actors": []})]) as server:
        Summarizer("openai", "test", base_url=server.url).summarize(text)
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union


@dataclass
class Reply:
    """One scripted answer: a JSON body (or raw bytes), a status, headers, a delay or a dropped connection."""

    body: Any = None
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    drop: bool = False


def tool_reply(arguments: Union[dict, str], prompt_tokens: int = 100, completion_tokens: int = 20) -> Reply:
    """A chat completion whose single tool call carries `arguments` (dict or raw string)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Reply({
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_0", "type": "function",
                            "function": {"name": "tool", "arguments": args}}]}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def error_reply(status: int, message: str = "scripted error", retry_after: float | None = None) -> Reply:
    """An API error response, optionally with a Retry-After header."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply({"error": {"message": message, "type": "scripted", "code": status}}, status, headers)


def article_of(request: dict) -> str:
    """The article to process in a request: the last <article> block of its system message."""
    system = next((m["content"] for m in request.get("messages", []) if m.get("role") == "system"), "")
    return system.rsplit("<article>", 1)[-1]


def article_lines(request: dict) -> dict[int, str]:
    """The numbered sentences of the article to process, parsed from a request's system message."""
    return {int(n): t for n, t in re.findall(r"^\[(\d+)\] (.*)$", article_of(request), re.M)}


def heuristic_reply(request: dict) -> Reply:
    """A deterministic stand-in model: capitalised words as actors, 'said' sentences as positions."""
    tool = request["tools"][0]["function"]
    lines = article_lines(request)
    if tool["name"] == "ActorsDraft":
        names = []
        for text in lines.values():
            for w in re.findall(r"\b[A-Z][a-z]{3,}\b", text):
                if w not in names and len(names) < 3:
                    names.append(w)
        return tool_reply({"actors": [[n, "other", None, None] for n in names]})
    position = next(v for v in tool["parameters"]["anyOf"] if v["properties"]["type"].get("const") == "position")
    enum = position["properties"]["actor"].get("enum") or []
    user = request["messages"][-1]["content"]
    m = re.search(r"sentence \[(\d+)\]", user)
    sentence = lines.get(int(m.group(1)), "") if m else ""
    if enum and " said" in sentence:
        return tool_reply({"type": "position", "actor": enum[0], "topic": "statement"})
    return tool_reply({"type": "none"})


class InFlight:
    """A script that answers like `heuristic_reply` after `delay` seconds and records the most
    requests it was answering at once (`peak`): what a test of a concurrency bound reads."""

    def __init__(self, delay: float = 0.05):
        self.delay, self.now, self.peak = delay, 0, 0
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.delay)
            return heuristic_reply(request)
        finally:
            with self.lock:
                self.now -= 1


FAULTS = ("rate_limit", "server_error", "hang", "drop", "malformed", "schema", "ungrounded", "slow")


class Faults:
    """A script that injects faults in front of another script (default: `heuristic_reply`).

    `modes` maps a marker text to a fault; a request whose article contains the marker gets it:

    - ``rate_limit``: 429 with ``Retry-After: retry_after``
    - ``server_error``: 500, 502 and 503 in turn
    - ``hang``: no answer for ``hang`` seconds (past the client timeout), then a valid reply
    - ``drop``: headers and half the body, then the connection is closed
    - ``malformed``: a 200 whose tool arguments are not JSON
    - ``schema``: valid JSON that violates the requested schema
    - ``ungrounded``: actors and mentions that are not in the article
    - ``slow``: a valid reply after ``slow`` seconds

    A fault fires on the first `times` requests of an article (None: on every request), then
    the wrapped script answers, so both transient and persistent failures can be staged.
    `latency` delays every reply (e.g. 0.2 s to stand in for a remote endpoint).
    """

    def __init__(self, modes: dict[str, str] | None = None, *, times: int | None = None,
                 base: Callable[[dict], Reply] = heuristic_reply, latency: float = 0.0,
                 retry_after: float = 0.1, hang: float = 30.0, slow: float = 1.0):
        unknown = set((modes or {}).values()) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault mode(s) {sorted(unknown)}: choose from {', '.join(FAULTS)}")
        self.modes, self.times, self.base, self.latency = dict(modes or {}), times, base, latency
        self.retry_after, self.hang, self.slow = retry_after, hang, slow
        self.fired: dict[str, int] = {}  # marker -> faults injected so far
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        article = article_of(request)
        for marker, mode in self.modes.items():
            if marker in article:
                with self.lock:
                    n = self.fired.get(marker, 0)
                    if self.times is not None and n >= self.times:
                        break
                    self.fired[marker] = n + 1
                reply = self._fault(mode, n, request)
                reply.delay += self.latency
                return reply
        reply = self.base(request)
        reply.delay += self.latency
        return reply

    def _fault(self, mode: str, n: int, request: dict) -> Reply:
        if mode == "rate_limit":
            return error_reply(429, "rate limited", retry_after=self.retry_after)
        if mode == "server_error":
            return error_reply((500, 502, 503)[n % 3], "scripted server error")
        if mode == "hang":
            r = self.base(request)
            r.delay = self.hang
            return r
        if mode == "drop":
            r = self.base(request)
            r.drop = True
            return r
        if mode == "malformed":
            return tool_reply('{"actors": [["Valmont", ')
        if mode == "schema":
            return tool_reply({"actors": "none", "type": 42})
        if mode == "ungrounded":
            tool = request["tools"][0]["function"]["name"]
            if tool == "ActorsDraft":
                return tool_reply({"actors": [["Atlantis", "state", None, "the Atlantean navy"]]})
            return tool_reply({"type": "position", "actor": "Atlantis", "topic": "invented"})
        r = self.base(request)  # slow
        r.delay = self.slow
        return r


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do (every reply has a Content-Length)
    wbufsize = -1                  # headers and body leave in one write (flushed after each request) ...
    disable_nagle_algorithm = True  # ... and without waiting for a delayed ACK

    def log_message(self, *args: Any) -> None:
        """Silence the per-request access log (tests would drown in it)."""

    def do_GET(self) -> None:  # /v1/models
        self._send(Reply({"object": "list", "data": [{"id": "scripted", "object": "model"}]}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(request)
            index = len(owner.requests) - 1
        reply = owner.reply_for(request, index)
        if reply.delay:
            time.sleep(reply.delay)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if reply.drop:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up first (its timeout during a "hang"): nobody left to answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of concurrent clients connects at once (socketserver's 5 drops them)
    owner: "ScriptedServer"


class ScriptedServer:
    """Serves replies from a list (in order; the last repeats) or from a function of the request."""

    def __init__(self, script: Union[list[Reply], Callable[[dict], Reply]] = heuristic_reply):
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients (…/v1)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def reply_for(self, request: dict, index: int) -> Reply:
        if callable(self.script):
            return self.script(request)
        return self.script[min(index, len(self.script) - 1)]

    def start(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    """`python -m summarizer.testing [--latency S]`: serve the heuristic model; prints the URL."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m summarizer.testing")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    args = ap.parse_args(argv)
    with ScriptedServer(Faults(latency=args.latency)) as s:
        print(s.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
