"""A misbehaving backend on loopback, for tests: it answers every request with a fixed error status and a body
that echoes the request's headers (the credential included) as a JSON error or as text, or (`plain`) a JSON error
that echoes nothing; it keeps the headers it saw."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

MARKER = "echo-backend-body"  # in every body, so a test can find the body in the server log
PLAIN_MESSAGE = "model 'x' is not loaded on this backend"


@dataclass
class EchoBackend:
    base_url: str
    seen: list[dict[str, str]] = field(default_factory=list)

    def authorization(self) -> list[str]:
        return [h.get("authorization", "") for h in self.seen]


@contextmanager
def echo_backend(
    status: int = 401, body: Literal["echo-json", "echo-text", "plain"] = "echo-json"
) -> Iterator[EchoBackend]:
    backend = EchoBackend("")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            backend.seen.append(headers)
            auth = headers.get("authorization") or headers.get("x-api-key") or ""
            text = f"{MARKER}: rejected credential, you sent Authorization: {auth} (headers: {headers})"
            if body == "plain":
                text = f"{MARKER}: {PLAIN_MESSAGE}"
            as_json = body != "echo-text"
            data = (json.dumps({"error": {"message": text, "type": "auth"}}) if as_json else text).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json" if as_json else "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    backend.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
