"""A minimal RFC 6455 websocket client (text frames, ping/pong, close), enough to be a dashboard tab.

No websocket library is among the project's dependencies, and the tests need to control the Origin
and Cookie headers exactly, so the handshake is written out here.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from urllib.parse import urlsplit


class WebSocketRefused(Exception):
    def __init__(self, status: int, head: str):
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.head = head


class WebSocketClosed(Exception):
    def __init__(self, code: int | None):
        super().__init__(f"closed by the server (code {code})")
        self.code = code


class WebSocket:
    def __init__(self, url: str, *, origin: str | None = None, cookie: str | None = None, timeout: float = 10):
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        if cookie:
            lines.append(f"Cookie: {cookie}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        text, _, self._buffer = head.partition(b"\r\n\r\n")
        status_line = text.split(b"\r\n", 1)[0].decode(errors="replace")
        self.status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
        if self.status != 101:
            self.sock.close()
            raise WebSocketRefused(self.status, text.decode(errors="replace"))

    # -- frames --------------------------------------------------------------------------------------

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no websocket frame in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no websocket frame in time") from None
            if not chunk:
                raise WebSocketClosed(None)
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv_text(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        message = b""
        while True:
            b0, b1 = self._read(2, deadline)
            opcode, fin = b0 & 0x0F, b0 & 0x80
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2, deadline))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8, deadline))[0]
            payload = self._read(length, deadline) if length else b""
            if opcode == 0x9:  # ping
                self._send(0xA, payload)
                continue
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise WebSocketClosed(code)
            if opcode in (0x1, 0x0):
                message += payload
                if fin:
                    return message.decode()

    def recv_json(self, timeout: float = 10) -> dict:
        return json.loads(self.recv_text(timeout))

    def messages_until(self, predicate, timeout: float) -> list[dict]:
        """Collect messages until one satisfies `predicate`; raise TimeoutError with what came if none does."""
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout}s; got {[m.get('kind') for m in seen]}")
            try:
                message = self.recv_json(left)
            except TimeoutError:
                got = [(m.get("kind"), m.get("data", {}).get("status")) for m in seen]
                raise TimeoutError(f"no matching message in {timeout}s; got {got}") from None
            seen.append(message)
            if predicate(message):
                return seen

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def login_cookie(base_url: str, username: str, password: str) -> str:
    """Log in through the real login form; returns the Cookie header value (session and CSRF cookies)."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(f"{base_url}/accounts/login/", data=body, headers={"Referer": f"{base_url}/accounts/login/"})
    opener.open(request, timeout=10).read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise RuntimeError("login failed: no session cookie")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())
