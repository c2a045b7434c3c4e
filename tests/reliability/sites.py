"""Local sites the scenarios' tasks visit, served from the pytest process on 127.0.0.1.

`contact_site()` is the contact form of the heal tests (version 1: `#submit`, version 2: the button is
now `#send-message`), with hooks to hold a chosen request until the test lets it go, so a worker can
be killed at a known point. `hostile_site()` serves pages that hang, stream forever, or are huge.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tasks_app.tests.sites import Site, serve

CONTACT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''

CONTACT_CODE_MANUAL = '''def run(page, params):
    # Fixed by hand: the Send button is now #send-message.
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.click("#send-message")
    return {"confirmation": page.inner_text(".confirmation")}
'''


@dataclass
class Contact:
    """State of a contact site: its version, and holds on the n-th request of a kind."""

    site: Site
    version: int = 1
    holds: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    posted_names: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.site.url

    def hold(self, kind: str, nth: int) -> threading.Event:
        """Keep the `nth` request of `kind` ("GET /contact", "POST /thanks") waiting until the event is set.
        Counting starts now."""
        with self.lock:
            self.counts[kind] = 0
            event = threading.Event()
            self.holds[(kind, nth)] = event
            return event

    def release_all(self) -> None:
        for event in self.holds.values():
            event.set()

    def _gate(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1
            event = self.holds.get((kind, self.counts[kind]))
        if event is not None:
            event.wait(90)


def contact_page(version: int) -> str:
    if version == 1:
        button = '<button id="submit" type="submit" class="btn primary">Send</button>'
    else:
        button = '<button id="send-message" type="submit" class="btn primary cta" data-testid="send">Send message</button>'
    return (
        "<html><body><h1>Contact</h1>"
        '<form method="post" action="/thanks"><label for="name">Name</label><input id="name" name="name">'
        f'<button type="reset" class="btn">Clear</button>{button}</form></body></html>'
    )


@contextmanager
def contact_site() -> Iterator[Contact]:
    holder: dict[str, Contact] = {}

    def contact(request) -> str:
        holder["c"]._gate("GET /contact")
        return contact_page(holder["c"].version)

    def thanks(request) -> str:
        state = holder["c"]
        state._gate("POST /thanks")
        name = request.form.get("name", "")
        with state.lock:
            state.posted_names.append(name)
        return f'<p class="confirmation">Thanks, {name}!</p>'

    with serve({"/contact": contact, "/thanks": thanks}) as site:
        state = Contact(site=site)
        holder["c"] = state
        try:
            yield state
        finally:
            state.release_all()


# -- hostile pages ------------------------------------------------------------------------------------


def big_page(elements: int = 50_000) -> bytes:
    rows = "".join(f'<div class="row" data-i="{i}"><span>item {i}</span></div>' for i in range(elements))
    return (
        '<html><body><h1>Big</h1><button id="go" onclick="document.getElementById(\'out\').textContent=\'clicked\'">Go</button>'
        f'<p id="out"></p><div id="rows">{rows}</div></body></html>'
    ).encode()


class _Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stopping: threading.Event
    big: bytes

    def do_GET(self) -> None:
        if self.path.startswith("/hang"):
            self.stopping.wait(120)  # accept, then never answer
            return
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                chunk = b"<p>" + b"more " * 200 + b"</p>\n"
                frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                self.wfile.write(f"{6:x}\r\n".encode() + b"<html>\r\n")
                while not self.stopping.is_set():  # an endless body, never finished
                    self.wfile.write(frame)
                    self.wfile.flush()
                    time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if self.path.startswith("/big"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.big)))
            self.end_headers()
            self.wfile.write(self.big)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def hostile_site() -> Iterator[str]:
    stopping = threading.Event()
    handler = type("Hostile", (_Hostile,), {"stopping": stopping, "big": big_page()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


# -- a model that never answers in time --------------------------------------------------------------


class StalledModel:
    """An OpenAI-compatible endpoint that holds every request until released, then answers 503.

    Tasks whose `healing_agent` is "llm" call it during their takeover, so a test knows for sure that a
    takeover is in progress (and can kill the worker doing it)."""

    def __init__(self) -> None:
        self.requests = 0
        self.release = threading.Event()
        self.stopping = threading.Event()
        model = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                model.requests += 1
                model.release.wait(120)
                body = b'{"error": {"message": "unavailable", "type": "server_error"}}'
                try:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reset(self) -> None:
        self.release.set()
        self.release = threading.Event()
        self.requests = 0

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
