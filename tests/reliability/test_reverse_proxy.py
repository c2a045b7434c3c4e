"""The shipped nginx locations (deploy/nginx/anchor-locations.conf) in front of the two web processes: pages,
the API and the live websocket work through it, both web processes serve, and when one of them dies the
proxy keeps answering from the other. Needs an nginx binary (on PATH or ANCHOR_NGINX); skipped without."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.browser.live import free_port
from tests.reliability.helpers import FINISHED
from tests.reliability.sites import CONTACT_CODE, contact_site
from tests.reliability.wsclient import WebSocket, login_cookie

pytestmark = pytest.mark.reliability

LOCATIONS = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "anchor-locations.conf"
NGINX = os.environ.get("ANCHOR_NGINX") or shutil.which("nginx")


@pytest.fixture
def proxy(c, tmp_path):
    if not NGINX:
        pytest.skip("no nginx binary (install nginx or set ANCHOR_NGINX)")
    port = free_port()
    # The http block of deploy/nginx/anchor.conf, on a free local port and without TLS.
    servers = "\n".join(f"        server 127.0.0.1:{c.web_ports[name]} max_fails=2 fail_timeout=5s;" for name in ("a", "b"))
    (tmp_path / "nginx.conf").write_text(f"""
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    upstream anchor_web {{
        least_conn;
{servers}
        keepalive 16;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        include {LOCATIONS};
    }}
}}
""")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    c.wait_for("nginx to answer", lambda: _answers(url), 20, interval=0.2)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/accounts/login/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_pages_api_and_live_updates_work_through_the_proxy_and_survive_a_web_process_dying(c, proxy):
    cookie = login_cookie(proxy, "rita", "pw-rita-123!")
    headers = {"Authorization": f"Bearer {c.reviewer['key']}"}
    with contact_site() as site:
        task = c.call("task_make", name=f"proxied {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"})
        before = {name: c.log(f"web-{name}").count('"GET /api/v1/tasks') for name in ("a", "b")}
        for _ in range(6):
            assert httpx.get(f"{proxy}/api/v1/tasks", headers=headers, timeout=30).status_code == 200
        served = {name: c.log(f"web-{name}").count('"GET /api/v1/tasks') - before[name] for name in ("a", "b")}
        assert all(served.values()), f"nginx did not use both web processes: {served}"

        ws_url = proxy.replace("http", "ws")
        with WebSocket(f"{ws_url}/ws/live/?task={task}", origin=proxy, cookie=cookie) as live:
            started = httpx.post(f"{proxy}/api/v1/tasks/{task}/runs", json={}, headers=headers, timeout=30)
            assert started.status_code == 202
            run_id = started.json()["id"]
            live.messages_until(lambda m: m["kind"] == "run.finished" and m["data"]["run"] == run_id, 90)

        # One web process dies: the proxy answers from the other one, and the dashboard reconnects there.
        os.kill(c.webs["a"].pid, signal.SIGKILL)
        c.webs["a"].wait(timeout=10)
        answers = [httpx.get(f"{proxy}/api/v1/tasks/{task}", headers=headers, timeout=30).status_code for _ in range(6)]
        assert answers == [200] * 6
        page = httpx.get(f"{proxy}/tasks/{task}/", headers={"Cookie": cookie}, timeout=30)
        assert page.status_code == 200
        with WebSocket(f"{ws_url}/ws/live/", origin=proxy, cookie=cookie) as again:
            [second] = c.call("runs_enqueue", task)
            again.messages_until(lambda m: m["kind"] == "run.finished" and m["data"]["run"] == second, 90)
    assert c.call("run_get", second)["status"] in FINISHED  # the fixture `c` restarts web "a" for the next test
