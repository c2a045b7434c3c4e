"""A task with secrets runs and heals on the real processes: no secret value appears in any log line of
the web processes and workers, in any API response or dashboard page, in the database or in Redis."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tasks_app.tests.sites import serve
from tests.reliability.helpers import FINISHED
from tests.reliability.wsclient import login_cookie

pytestmark = pytest.mark.reliability

PASSWORD = "pw-S3cr3t-9f8e7d"
TOKEN = "tok-Xq7Zr2Lp9w"
SECRETS = (PASSWORD, TOKEN)

LOGIN_CODE = '''def run(page, params):
    print("signing in with", params["secrets"]["password"])
    page.goto(params["base_url"] + "/login?token=" + params["secrets"]["token"])
    page.fill("#user", params["user"])
    page.fill("#pass", params["secrets"]["password"])
    page.click("#login")
    return {"welcome": page.inner_text(".welcome")}
'''


def _login_site(state: dict):
    def login(request) -> str:
        button = ('<button id="login" type="submit">Sign in</button>' if state["version"] == 1 else
                  '<button id="sign-in" type="submit" data-testid="sign-in">Sign in</button>')
        return ('<html><body><h1>Sign in</h1><form method="post" action="/account">'
                '<label for="user">User</label><input id="user" name="user">'
                f'<label for="pass">Password</label><input id="pass" name="pass" type="password">{button}</form></body></html>')

    def account(request) -> str:
        if request.form.get("pass") != PASSWORD:
            return '<p class="error">wrong password</p>'
        return f'<p class="welcome">Welcome, {request.form.get("user")}</p>'

    return serve({"/login": login, "/account": account})


def test_no_secret_reaches_logs_pages_api_database_or_redis(c, api):
    state = {"version": 1}
    with _login_site(state) as site:
        task = c.call("task_make", name=f"secrets {uuid.uuid4().hex[:6]}", code=LOGIN_CODE,
                      params={"base_url": site.url, "user": "ada"}, secrets={"password": PASSWORD, "token": TOKEN},
                      self_healing=True, config={"auto_deploy": False, "validation_required": True})
        [first] = c.call("runs_enqueue", task)
        assert c.wait_for("the first run", lambda: (r := c.call("run_get", first))["status"] in FINISHED and r, 90)["status"] == "succeeded"
        state["version"] = 2
        [second] = c.call("runs_enqueue", task)
        final = c.wait_for("the heal", lambda: (s := c.call("task_state", task))["events"] and
                           s["events"][0]["status"] in ("pending_review", "failed", "deployed") and s, 150)
    event = final["events"][0]
    # The secrets did their job: the site got the token in the URL and the password in the form.
    assert any(r.path == "/login" and r.query.get("token") == TOKEN for r in site.requests)
    assert any(r.path == "/account" and r.form.get("pass") == PASSWORD for r in site.requests)
    assert c.call("run_get", second)["status"] == "healed", c.call("run_get", second)
    assert event["status"] == "pending_review", event

    client = api("a")
    answers = {
        path: client.get(path)
        for path in (
            f"/tasks/{task}", "/tasks", f"/tasks/{task}/runs", f"/runs/{first}", f"/runs/{second}",
            f"/tasks/{task}/versions", f"/tasks/{task}/versions/1", f"/tasks/{task}/versions/2",
            f"/tasks/{task}/versions/2/diff", f"/healing-events/{event['id']}", f"/tasks/{task}/healing-events",
        )
    }
    assert {path: r.status_code for path, r in answers.items()} == {path: 200 for path in answers}
    responses = {path: r.text for path, r in answers.items()}
    cookie = login_cookie(c.url("b"), "rita", "pw-rita-123!")
    pages = {
        path: httpx.get(f"{c.url('b')}{path}", headers={"Cookie": cookie}, timeout=30)
        for path in (
            "/", "/events/rows/", "/overview/", "/tasks/", f"/tasks/{task}/", f"/tasks/{task}/part/runs/",
            f"/tasks/{task}/part/versions/", f"/tasks/{task}/part/events/", f"/events/{event['id']}/",
            f"/events/{event['id']}/part/summary/", f"/events/{event['id']}/part/evidence/",
        )
    }
    assert {path: r.status_code for path, r in pages.items()} == {path: 200 for path in pages}
    pages = {path: r.text for path, r in pages.items()}

    logs = c.logs()
    found = []
    for secret in SECRETS:
        found += [f"log {name}: {line.strip()[:160]}" for name, text in logs.items() for line in text.splitlines() if secret in line]
        found += [f"API {path}" for path, text in responses.items() if secret in text]
        found += [f"page {path}" for path, text in pages.items() if secret in text]
        if secret in c.call("data_dump", task):
            found.append("the database (runs, events, versions, fingerprints, audit)")
        if _in_redis(c, secret):
            found.append("Redis")
    assert not found, "secrets leaked:\n" + "\n".join(found)


def _in_redis(c, secret: str) -> bool:
    from redis import Redis

    connection = Redis.from_url(c.redis.url())
    for key in connection.scan_iter(count=1000):
        kind = connection.type(key)
        if kind == b"string":
            values = [connection.get(key) or b""]
        elif kind == b"hash":
            values = list(connection.hgetall(key).values())
        elif kind == b"list":
            values = connection.lrange(key, 0, -1)
        elif kind == b"zset":
            values = connection.zrange(key, 0, -1)
        elif kind == b"set":
            values = list(connection.smembers(key))
        else:
            values = []
        if any(secret.encode() in value for value in values if isinstance(value, bytes)):
            return True
    return False
