"""The ASGI entry point daphne loads: status lines carry their standard reason phrases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What daphne does: import the application, then let Twisted write "HTTP/1.1 <code> <reason>".
PROBE = """
import anchor_site.asgi
from twisted.web.http import Request
from twisted.web.test.requesthelper import DummyChannel
request = Request(DummyChannel())
for code in (422, 429, 200):
    request.setResponseCode(code)
    print(code, request.code_message.decode())
"""


def test_daphne_sends_too_many_requests_not_unknown_status():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "ANCHOR_TESTING": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == ["422 Unprocessable Entity", "429 Too Many Requests", "200 OK"]
