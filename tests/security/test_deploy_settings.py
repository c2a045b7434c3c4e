"""Production settings, checked in fresh processes started the way a deployment starts them (SECRET_KEY,
DEBUG off, SECURE_HTTPS on, ALLOWED_HOSTS): `manage.py check --deploy` is clean, and every response carries
the security headers; HSTS only over HTTPS."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = "anchor.example.com"

PROBE = r'''
import json
from django.test import Client
from django.contrib.auth import get_user_model
from django.core.management import call_command

call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("probe", password="pw-probe-123!")
out = {}
https = Client(HTTP_HOST="@HOST@")
for path in ("/accounts/login/", "/api/v1/tasks", "/admin/login/", "/static/js/live.js"):
    response = https.get(path, secure=True)
    out[path] = {"status": response.status_code, "headers": dict(response.headers)}
http = Client(HTTP_HOST="@HOST@")
response = http.get("/accounts/login/")
out["http"] = {"status": response.status_code, "headers": dict(response.headers)}
login = https.post("/accounts/login/", {"username": "probe", "password": "pw-probe-123!"}, secure=True)
page = https.get("/accounts/login/", secure=True)
out["cookies"] = {name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"]), "samesite": c["samesite"]}
                  for name, c in {**login.cookies, **page.cookies}.items()}
print("@@" + json.dumps(out))
'''.replace("@HOST@", HOST)


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
    for key in ("ANCHOR_TESTING", "DEBUG", "DATABASE_URL", "BEHIND_PROXY", "SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT"):
        env.pop(key, None)
    env.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        SECRET_KEY=secrets.token_urlsafe(64),
        DEBUG="0",
        SECURE_HTTPS="1",
        ALLOWED_HOSTS=HOST,
        ANCHOR_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        LOG_LEVEL="ERROR",
        **extra,
    )
    return env


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_a_secret_key_production_refuses_to_start(tmp_path):
    env = production_env(tmp_path)
    env.pop("SECRET_KEY")
    result = manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.fixture(scope="module")
def production_responses(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("prod")
    env = production_env(tmp_path)
    collected = manage(env, "collectstatic", "--no-input", "-v", "0")
    assert collected.returncode == 0, collected.stderr
    result = manage(env, "shell", "-c", PROBE)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("@@", 1)[1])


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/tasks", "/admin/login/", "/static/js/live.js"])
def test_every_https_response_carries_the_security_headers(production_responses, path):
    response = production_responses[path]
    headers = {key.lower(): value for key, value in response["headers"].items()}
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert "includeSubDomains" in headers["strict-transport-security"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    if path != "/static/js/live.js":
        assert headers["x-frame-options"] == "DENY"
        assert headers["cross-origin-opener-policy"] == "same-origin"
    if not path.startswith(("/admin/", "/static/")):
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]


def test_plain_http_is_redirected_to_https_without_hsts(production_responses):
    response = production_responses["http"]
    assert response["status"] == 301
    assert response["headers"]["Location"] == f"https://{HOST}/accounts/login/"
    assert "Strict-Transport-Security" not in response["headers"]


def test_session_and_csrf_cookies_are_https_only(production_responses):
    cookies = production_responses["cookies"]
    assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httponly"]
    assert cookies["csrftoken"]["secure"]


def test_development_settings_send_no_hsts_but_the_other_headers(client):
    response = client.get("/accounts/login/")
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
