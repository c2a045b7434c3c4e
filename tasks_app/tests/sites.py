"""A tiny threaded HTTP server serving test pages on localhost, for tests that drive a browser.

    with serve({"/": "<h1>Hi</h1>", "/old": redirect("/"), "/boom": Response("no", status=500),
                "/slow": Response("<p>late</p>", delay=2), "/hang": hang(),
                "/form": lambda req: f"<p>{req.form.get('name')}</p>"}) as site:
        page.goto(site.url + "/")
        assert site.hits["POST /form"] == 1

Values of the pages dict: str/bytes (200 text/html), a Response, or a callable taking a Request and
returning either. Unknown paths answer 404. `site.pages` can be changed while serving.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    body: str | bytes = ""
    status: int = 200
    headers: dict = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    delay: float = 0.0  # seconds before answering
    hang: bool = False  # never answer (until the server stops)


def redirect(location: str, status: int = 302) -> Response:
    return Response("", status=status, headers={"Location": location})


def hang() -> Response:
    return Response(hang=True)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    form: dict


Page = str | bytes | Response | Callable[[Request], str | bytes | Response]


class Site:
    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = dict(pages)
        self.hits: Counter = Counter()
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self.url = ""
        self.port = 0
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return self.url

    def __call__(self, path: str) -> str:
        return self.url + path

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        form = {}
        if "application/x-www-form-urlencoded" in (handler.headers.get("Content-Type") or ""):
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
        req = Request(handler.command, parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                      dict(handler.headers), body, form)
        with self._lock:
            self.hits[f"{handler.command} {parts.path}"] += 1
            self.hits[parts.path] += 1
            self.requests.append(req)
        page = self.pages.get(parts.path)
        if page is None:
            resp = Response("<h1>Not found</h1>", status=404)
        elif callable(page) and not isinstance(page, Response):
            resp = page(req)
        else:
            resp = page
        if not isinstance(resp, Response):
            resp = Response(resp)
        if resp.hang:
            self.stopping.wait()
            return
        if resp.delay:
            self.stopping.wait(resp.delay)
        data = resp.body.encode() if isinstance(resp.body, str) else resp.body
        try:
            handler.send_response(resp.status)
            handler.send_header("Content-Type", resp.content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("Cache-Control", "no-store")
            for k, v in resp.headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _handler_class(site: Site) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            site.handle(self)

        do_POST = do_HEAD = do_PUT = do_DELETE = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(pages: dict[str, Page]) -> Iterator[Site]:
    site = Site(pages)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(site))
    server.daemon_threads = True
    site.port = server.server_address[1]
    site.url = f"http://127.0.0.1:{site.port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stopping.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A localhost port with nothing listening (for connection-refused cases)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    time.sleep(0.01)
    return port
