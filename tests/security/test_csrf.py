"""CSRF: every URL of the site that is not the token-authenticated API refuses a POST without a CSRF token,
and changes nothing. The URLs are enumerated from the URLconf, so a new form cannot be forgotten."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch

pytestmark = pytest.mark.django_db

# The only exemption: the demo site bundled at /demo-site/ imitates someone else's site (tasks fill in its
# contact form); its form stores nothing in Anchor. Checked below.
EXEMPT = {"demo-contact"}
# The REST API authenticates with API keys in a header, never with the session cookie (checked below), so
# a forged cross-site request has no credentials to ride on; it is outside CSRF's scope.
API_PREFIX = "api/v1/"


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), (f"{namespace}{entry.name}" if entry.name else None), entry


def _value(url_name: str, key: str, world: dict) -> str:
    if key == "part":
        return "summary" if url_name.startswith("event") else "runs"
    ids = {
        "task_id": world["task"].pk,
        "event_id": world["event"].pk,
        "endpoint_id": world["endpoint"].pk,
        "delivery_id": world["delivery"].pk,
        "key_id": world["key"].pk,
        "object_id": world["task"].pk,
        "app_label": "tasks_app",
    }
    return str(ids.get(key, "1"))


def site_urls(world: dict) -> tuple[dict[str, str], list[str]]:
    """Every named URL outside the API, with real object ids; and the patterns that could not be built."""
    urls: dict[str, str] = {}
    skipped: list[str] = []
    for route, name, pattern in _patterns(get_resolver()):
        if route.lstrip("^").startswith(("api/", "static")):
            continue
        if name is None:
            if route == "admin/(?P<url>.*)$":  # the admin's catch-all redirect
                urls["unnamed:admin catch-all"] = "/admin/anything/"
            elif route.startswith("^") or "(?P" in route:
                skipped.append(route)
            else:  # e.g. the admin's redirects: fill the path converters by hand
                key = f"unnamed:{route}"
                urls[key] = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m, route=route: _value(route, m.group(1), world), route)
            continue
        keys = list(pattern.pattern.regex.groupindex)
        try:
            urls[name] = reverse(name, kwargs={key: _value(name, key, world) for key in keys})
        except NoReverseMatch:
            skipped.append(route)
    return urls, skipped


def _counts() -> dict[str, int]:
    from django.apps import apps

    return {model._meta.label: model.objects.count() for model in apps.get_models()
            if model._meta.app_label in ("tasks_app", "healing_app", "auth", "sessions") and model._meta.label != "sessions.Session"}


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_every_url_refuses_a_post_without_a_csrf_token_and_changes_nothing(boss, world):
    urls, skipped = site_urls(world)
    assert len(urls) > 40, f"the URLconf enumeration found only {sorted(urls)}"
    client = _csrf_client(boss)
    before = _counts()
    accepted = {}
    for name, url in sorted(urls.items()):
        if name in EXEMPT:
            continue
        response = client.post(url, {"comment": "forged", "url": "https://evil.example.com/", "enabled": "0"})
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted[name] = (url, response.status_code)
    assert not accepted, f"POST without a CSRF token was not refused: {accepted}"
    assert _counts() == before
    assert not skipped, f"routes this test does not know how to build: {skipped}"


def test_the_state_changing_forms_work_with_the_token_so_the_refusals_above_mean_something(boss, world):
    urls, _ = site_urls(world)
    client = _csrf_client(boss)
    client.get(reverse("queue"))  # sets the CSRF cookie, as any page the forms are on does
    token = client.cookies["csrftoken"].value
    post_views = {}
    for name, url in sorted(urls.items()):
        if name in EXEMPT or name.startswith("admin:") or name.startswith("django_rq") or name.startswith("rq_"):
            continue
        response = client.post(url, {"comment": "fine"}, headers={"X-CSRFToken": token})
        if response.status_code != 405:
            post_views[name] = response.status_code
    # The dashboard's own state-changing endpoints were all found, and with a token CSRF lets them through.
    for expected in ("event-approve", "event-reject", "task-new", "task-edit", "task-run", "task-config", "task-deploy",
                     "run-cancel", "demo-control", "webhooks:create", "webhooks:send_test", "webhooks:rotate_secret",
                     "webhooks:set_enabled", "webhooks:redeliver", "webhooks:delete", "webhooks:edit",
                     "api_keys:create", "api_keys:revoke", "logout"):
        assert expected in post_views, (expected, sorted(post_views))
    assert all(status != 403 for status in post_views.values()), post_views


def test_the_only_csrf_exempt_view_is_the_demo_sites_contact_form_and_it_stores_nothing(client, world):
    exempt = {name for name, _, pattern in ((n, r, p) for r, n, p in _patterns(get_resolver()))
              if name and getattr(pattern.callback, "csrf_exempt", False) and not _route_of(name).startswith(API_PREFIX)}
    assert exempt == EXEMPT
    before = _counts()
    response = Client(enforce_csrf_checks=True).post(reverse("demo-contact"), {"name": "Ada"})
    assert response.status_code == 200
    assert _counts() == before


def _route_of(name: str) -> str:
    for route, pattern_name, _ in _patterns(get_resolver()):
        if pattern_name == name:
            return route
    return ""


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._current = {"method": (attrs.get("method") or "get").lower(), "action": attrs.get("action"), "token": False}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attrs.get("name") == "csrfmiddlewaretoken":
            self._current["token"] = True

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def test_every_post_form_on_the_dashboard_pages_carries_a_csrf_token(boss, world):
    client = _csrf_client(boss)
    pages = [
        reverse("queue"), reverse("overview"), reverse("task-list"), reverse("task-detail", args=[world["task"].pk]),
        reverse("event-detail", args=[world["event"].pk]), reverse("webhooks:list"), reverse("webhooks:create"),
        reverse("webhooks:detail", args=[world["endpoint"].pk]), reverse("webhooks:edit", args=[world["endpoint"].pk]),
        reverse("webhooks:secret", args=[world["endpoint"].pk]),
        reverse("api_keys:list"), reverse("api_keys:revoke", args=[world["key"].pk]),
    ]
    post_forms = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        parser = _Forms()
        parser.feed(response.content.decode())
        for form in parser.forms:
            if form["method"] == "post":
                post_forms += 1
                assert form["token"], f"a POST form without csrfmiddlewaretoken on {url}: {form}"
    assert post_forms >= 6


def test_the_api_ignores_the_session_cookie_so_a_forged_request_carries_no_credentials(boss, world):
    client = _csrf_client(boss)  # logged in to the dashboard
    task = world["task"]
    before = _counts()
    for method, path, body in (
        ("post", "/api/v1/tasks", {"name": "forged", "code": "def run(page, params):\n    return 1\n"}),
        ("post", f"/api/v1/tasks/{task.pk}/runs", {}),
        ("patch", f"/api/v1/tasks/{task.pk}", {"name": "renamed"}),
        ("post", f"/api/v1/healing-events/{world['event'].pk}/approve", {}),
        ("delete", f"/api/v1/tasks/{task.pk}", None),
    ):
        response = getattr(client, method)(path, data=body, content_type="application/json")
        assert response.status_code == 401, (path, response.status_code)
    assert _counts() == before
    assert not re.search(r"csrftoken", client.get("/api/v1/tasks").headers.get("Set-Cookie", ""))
