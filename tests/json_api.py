"""A real HTTP server for the HTTP source's tests: a thread on a free port of loopback, answering
as the test's handler says (pages, faults, slow answers), quiet in the test's output."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class JsonHandler(BaseHTTPRequestHandler):
    """A handler with `answer`; tests subclass it with their own do_GET."""

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(handler: type[JsonHandler]) -> ThreadingHTTPServer:
    """Serves `handler` until the caller's shutdown(); its URL is http://127.0.0.1:<server_address[1]>."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
