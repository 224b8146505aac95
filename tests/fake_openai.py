"""A tiny OpenAI-compatible chat server for tests (standard library only, 127.0.0.1).

Serves ``POST /v1/chat/completions`` as plain JSON or, when the request says
``"stream": true``, as server-sent events (``data: {chat.completion.chunk}`` ...
``data: [DONE]``), so the real ``openai``/``langchain-openai`` client path is exercised.
Every request body is recorded in ``server.requests`` (parsed JSON) for inspection.

What the server does is chosen per test with :class:`Reply` kinds:

- ``"text"``: answer with ``Reply.text`` (streamed word by word when asked to stream)
- ``"error500"``: HTTP 500 with an OpenAI-style error body
- ``"hang"``: say nothing for ``Reply.delay`` seconds (longer than the client timeout)
- ``"stall"``: start streaming half of ``Reply.text``, then go silent for ``Reply.delay`` s
- ``"drip"``: stream ``Reply.text`` one token every ``Reply.delay`` seconds
- ``"garbage"``: 200, but the body / the stream chunks are not JSON
- ``"stop_halfway"``: stream half of ``Reply.text`` and then drop the connection
  (chunked body never terminated, no ``[DONE]``)
- ``"empty"``: a well-formed answer with no content
- ``"runaway"``: a model that never emits a stop token. Like llama.cpp's server it stops
  only at the ``max_tokens`` of the request body (``finish_reason: "length"``) and ignores
  ``max_completion_tokens``; without ``max_tokens`` it streams ``Reply.text`` over and over,
  one token every ``Reply.delay`` seconds, until the client disconnects (bounded by
  ``RUNAWAY_MAX_TOKENS`` / ``RUNAWAY_MAX_SECONDS``). Unstreamed, it is silent that long.
- ``"echo"``: a model that repeats its prompt: the answer is the system prompt and the
  user message (passages and question) of the request, verbatim
- ``"context_overflow"``: HTTP 400 with llama.cpp's error body ("the request exceeds the
  available context size ...")

Seen by the server: ``server.disconnects`` counts streams the client hung up on, and
``server.streamed_tokens`` lists how many content tokens each streamed reply sent.

:class:`FakeOllama` is the same idea for Ollama's native ``POST /api/chat`` (NDJSON
stream, ``options.num_predict`` honoured like ``max_tokens`` above); its ``base_url`` is
what ``OLLAMA_HOST`` should be.

Choosing the reply: ``server.script`` (a list, consumed first in order), then
``server.responder(body)`` (may return a Reply, a str for a text reply, or None),
then ``server.default``.

Usage::

    with FakeOpenAI(Reply("text", "Het antwoord [1].")) as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        ...
        server.requests[-1]["messages"]

The server binds port 0 on 127.0.0.1 (the OS picks a free port) and is always shut
down on exit; a hanging handler is released at shutdown.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

KINDS = (
    "text", "error500", "hang", "stall", "drip", "garbage", "stop_halfway", "empty",
    "runaway", "echo", "context_overflow",
)
RUNAWAY_MAX_TOKENS = 20_000  # a runaway stream ends here even if nobody hangs up ...
RUNAWAY_MAX_SECONDS = 120.0  # ... or after this long
LLAMA_CPP_CONTEXT_ERROR = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9731,
        "n_ctx": 4096,
    }
}


@dataclass
class Reply:
    """What the fake server answers to one request."""

    kind: str = "text"
    text: str = ""
    delay: float = 60.0  # seconds: silence for "hang"/"stall", pause per token for "drip"/"runaway"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown reply kind {self.kind!r}; use one of {KINDS}")


def tokens_of(text: str) -> list[str]:
    """Split a text into stream tokens: each word with its trailing whitespace."""
    return re.findall(r"\S+\s*|\s+", text)


def echo_text(body: dict) -> str:
    """What an echoing model says: the system and user messages of the request, verbatim."""
    parts = []
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        if m.get("role") in ("system", "user"):
            parts.append(str(c or ""))
    return "\n\n".join(parts)


def runaway_tokens(text: str, limit: int | None):
    """Reply.text's tokens over and over: `limit` of them, or RUNAWAY_MAX_TOKENS."""
    toks = tokens_of(text) or ["bla "]
    count = RUNAWAY_MAX_TOKENS if limit is None else min(int(limit), RUNAWAY_MAX_TOKENS)
    for i in range(count):
        yield toks[i % len(toks)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def finish(self):
        try:
            super().finish()
        except OSError:  # the connection was dropped on purpose (stop_halfway)
            pass

    # -- plumbing ---------------------------------------------------------------
    def _send_json(self, status: int, payload: dict | str) -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: str) -> None:
        raw = data.encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {data}\n\n")

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the socket abruptly, mid-body."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _completion_chunk(self, model: str, delta: dict, finish: str | None = None) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    # -- routes -----------------------------------------------------------------
    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        reply = self.server.fake._record_and_choose(body)
        stream = bool(body.get("stream"))
        model = str(body.get("model", "fake"))

        if reply.kind == "hang":
            self.server.fake._stopping.wait(reply.delay)
            self._drop()
            return
        if reply.kind == "error500":
            self._send_json(500, {"error": {"message": "fake internal error", "type": "server_error", "code": None}})
            return
        if reply.kind == "context_overflow":
            self._send_json(400, LLAMA_CPP_CONTEXT_ERROR)
            return
        if reply.kind == "echo":
            reply = Reply("text", echo_text(body))
        if reply.kind == "runaway" and not stream:
            # Generating forever before answering: silence, like "hang".
            self.server.fake._stopping.wait(min(reply.delay * RUNAWAY_MAX_TOKENS, RUNAWAY_MAX_SECONDS))
            self._drop()
            return
        if not stream:
            if reply.kind == "garbage":
                self._send_json(200, "{this is not json")
                return
            if reply.kind == "stall":
                self.server.fake._stopping.wait(reply.delay)
                self._drop()
                return
            if reply.kind == "stop_halfway":
                body_bytes = json.dumps(self._full_completion(model, reply.text)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body_bytes)))
                self.end_headers()
                self.wfile.write(body_bytes[: len(body_bytes) // 2])
                self.wfile.flush()
                self._drop()
                return
            text = "" if reply.kind == "empty" else reply.text
            self._send_json(200, self._full_completion(model, text))
            return

        # streamed
        self._start_stream()
        self._event(self._completion_chunk(model, {"role": "assistant", "content": ""}))
        if reply.kind == "garbage":
            self._event("{not json at all")
            self._event('{"choices": [{"delta": {"content": ')
            self._event("[DONE]")
            self._end_stream()
            return
        if reply.kind == "runaway":
            self._runaway(model, reply, body.get("max_tokens"))
            return
        toks = [] if reply.kind == "empty" else tokens_of(reply.text)
        if reply.kind in ("stop_halfway", "stall"):
            for tok in toks[: max(1, len(toks) // 2)]:
                self._event(self._completion_chunk(model, {"content": tok}))
            if reply.kind == "stall":
                self.server.fake._stopping.wait(reply.delay)
            self._drop()
            return
        for tok in toks:
            if reply.kind == "drip" and self.server.fake._stopping.wait(reply.delay):
                self._drop()
                return
            self._event(self._completion_chunk(model, {"content": tok}))
        self._event(self._completion_chunk(model, {}, finish="stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = self._completion_chunk(model, {})
            usage["choices"] = []
            usage["usage"] = {"prompt_tokens": 10, "completion_tokens": len(toks), "total_tokens": 10 + len(toks)}
            self._event(usage)
        self._event("[DONE]")
        self._end_stream()

    def _runaway(self, model: str, reply: Reply, limit: int | None) -> None:
        """Stream until max_tokens (if the request set it), the client hangs up, or the bounds."""
        fake = self.server.fake
        sent = 0
        end = time.monotonic() + RUNAWAY_MAX_SECONDS
        try:
            for tok in runaway_tokens(reply.text, limit):
                if fake._stopping.wait(reply.delay) or time.monotonic() > end:
                    break
                self._event(self._completion_chunk(model, {"content": tok}))
                sent += 1
            else:  # max_tokens reached: a clean end, as llama.cpp does
                self._event(self._completion_chunk(model, {}, finish="length"))
                self._event("[DONE]")
                self._end_stream()
                return
        except OSError:  # the client closed the connection
            fake._note_disconnect()
            return
        finally:
            fake._note_streamed(sent)
        self._drop()

    @staticmethod
    def _full_completion(model: str, text: str) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fake",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(tokens_of(text)), "total_tokens": 10 + len(tokens_of(text))},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAI, handler: type[BaseHTTPRequestHandler]):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), handler)


class FakeOpenAI:
    """The fake server: a context manager; `base_url` is what OPENAI_BASE_URL should be."""

    handler: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self, default: Reply | str | None = None):
        self.default: Reply = _as_reply(default) or Reply("text", "")
        self.script: list[Reply] = []
        self.responder: Callable[[dict], Reply | str | None] | None = None
        self.requests: list[dict] = []
        self.disconnects = 0
        self.streamed_tokens: list[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ------------------------------------------------------------
    def set(self, kind: str = "text", text: str = "", delay: float = 60.0) -> FakeOpenAI:
        """Set the default reply for every request that the script/responder does not cover."""
        self.default = Reply(kind, text, delay)
        return self

    def queue(self, *replies: Reply | str) -> FakeOpenAI:
        """Replies for the next requests, in order (then back to responder/default)."""
        self.script.extend(_as_reply(r) for r in replies)
        return self

    def _record_and_choose(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self.script:
                return self.script.pop(0)
        if self.responder is not None:
            chosen = _as_reply(self.responder(body))
            if chosen is not None:
                return chosen
        return self.default

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def _note_streamed(self, count: int) -> None:
        with self._lock:
            self.streamed_tokens.append(count)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll `predicate` (every 50 ms, at most `timeout` s); its last value."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return predicate()
            time.sleep(0.05)
        return True

    # -- lifecycle ----------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._stopping.clear()
        self._server = _Server(self, self.handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection helpers ---------------------------------------------------------
    @staticmethod
    def messages(request: dict) -> list[dict]:
        return list(request.get("messages") or [])

    @classmethod
    def content(cls, request: dict, role: str) -> str:
        """All message contents of one role in a request, joined."""
        parts = []
        for m in cls.messages(request):
            if m.get("role") == role:
                c = m.get("content")
                if isinstance(c, list):  # content parts
                    c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
                parts.append(str(c or ""))
        return "\n".join(parts)

    def answer_requests(self) -> list[dict]:
        """Requests that carried passages (the answer calls, not the condense calls)."""
        return [r for r in self.requests if "<passage" in self.content(r, "user")]


def _as_reply(value: Reply | str | None) -> Reply | None:
    if value is None or isinstance(value, Reply):
        return value
    return Reply("text", str(value))


# -- Ollama ------------------------------------------------------------------------------


class _OllamaHandler(_Handler):
    """Ollama's native chat API: ``POST /api/chat``, NDJSON lines when ``"stream": true``."""

    def do_GET(self):
        if self.path.rstrip("/") in ("", "/api/version"):
            self._send_json(200, {"version": "0.0.0-fake"})
        elif self.path.rstrip("/") == "/api/tags":
            self._send_json(200, {"models": [{"name": "fake", "model": "fake"}]})
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def _line(self, payload: dict) -> None:
        self._chunk(json.dumps(payload) + "\n")

    def _message(self, model: str, content: str, done: bool = False, reason: str | None = None) -> dict:
        part = {
            "model": model,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "message": {"role": "assistant", "content": content},
            "done": done,
        }
        if done:
            part.update(done_reason=reason or "stop", total_duration=1, load_duration=1,
                        prompt_eval_count=10, prompt_eval_duration=1, eval_count=1, eval_duration=1)
        return part

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        if self.path.rstrip("/") != "/api/chat":
            self._send_json(404, {"error": f"no route {self.path}"})
            return
        reply = self.server.fake._record_and_choose(body)
        model = str(body.get("model", "fake"))
        limit = (body.get("options") or {}).get("num_predict")
        if reply.kind == "error500":
            self._send_json(500, {"error": "fake internal error"})
            return
        if reply.kind == "context_overflow":
            self._send_json(400, {"error": "the request exceeds the available context size, try increasing it"})
            return
        if reply.kind == "echo":
            reply = Reply("text", echo_text(body))
        if reply.kind not in ("text", "runaway"):
            raise NotImplementedError(f"FakeOllama does not do {reply.kind!r}")
        if body.get("stream") is False:
            if reply.kind == "runaway":
                toks = list(runaway_tokens(reply.text, limit)) if limit is not None else None
                if toks is None:
                    self.server.fake._stopping.wait(RUNAWAY_MAX_SECONDS)
                    self._drop()
                    return
                self._send_json(200, self._message(model, "".join(toks), True, "length"))
                return
            self._send_json(200, self._message(model, reply.text, True))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if reply.kind == "text":
            for tok in tokens_of(reply.text):
                self._line(self._message(model, tok))
            self._line(self._message(model, "", True))
            self._end_stream()
            return
        fake = self.server.fake
        sent = 0
        end = time.monotonic() + RUNAWAY_MAX_SECONDS
        try:
            for tok in runaway_tokens(reply.text, limit):
                if fake._stopping.wait(reply.delay) or time.monotonic() > end:
                    break
                self._line(self._message(model, tok))
                sent += 1
            else:  # num_predict reached
                self._line(self._message(model, "", True, "length"))
                self._end_stream()
                return
        except OSError:
            fake._note_disconnect()
            return
        finally:
            fake._note_streamed(sent)
        self._drop()


class FakeOllama(FakeOpenAI):
    """A fake Ollama server; `base_url` is what OLLAMA_HOST should be."""

    handler = _OllamaHandler

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
