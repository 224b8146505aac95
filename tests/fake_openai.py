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

KINDS = ("text", "error500", "hang", "stall", "drip", "garbage", "stop_halfway", "empty")


@dataclass
class Reply:
    """What the fake server answers to one request."""

    kind: str = "text"
    text: str = ""
    delay: float = 60.0  # seconds: silence for "hang"/"stall", pause per token for "drip"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown reply kind {self.kind!r}; use one of {KINDS}")


def tokens_of(text: str) -> list[str]:
    """Split a text into stream tokens: each word with its trailing whitespace."""
    return re.findall(r"\S+\s*|\s+", text)


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

    def __init__(self, fake: FakeOpenAI):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class FakeOpenAI:
    """The fake server: a context manager; `base_url` is what OPENAI_BASE_URL should be."""

    def __init__(self, default: Reply | str | None = None):
        self.default: Reply = _as_reply(default) or Reply("text", "")
        self.script: list[Reply] = []
        self.responder: Callable[[dict], Reply | str | None] | None = None
        self.requests: list[dict] = []
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
        self._server = _Server(self)
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
