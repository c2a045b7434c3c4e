"""classify() maps the evidence of a failed call to one failure type; pure, no browser."""

from __future__ import annotations

import pytest

from tasks_app.runner.errors import classify, describe, is_login_url
from tasks_app.runner.protocol import mask_secrets, secret_values

TIMEOUT = {"playwright": True, "exception": "TimeoutError", "message": "Locator.click: Timeout 5000ms exceeded."}
SETTLED = {"readyState": "complete", "pending_requests": 0, "busy": False}


def test_python_errors_in_task_code_are_script_errors():
    for exc in ("AssertionError", "KeyError", "TypeError", "ZeroDivisionError"):
        assert classify({"exception": exc, "message": "x", "playwright": False}) == "script_error"


def test_missing_selector_on_settled_page_is_element_not_found():
    ev = {**TIMEOUT, **SETTLED, "selector": "#submit", "match_count": 0}
    assert classify(ev) == "element_not_found"


def test_missing_selector_while_page_still_loading_is_timeout():
    for loading in ({"readyState": "interactive"}, {"pending_requests": 2}, {"busy": True}):
        ev = {**TIMEOUT, **SETTLED, **loading, "selector": "#submit", "match_count": 0}
        assert classify(ev) == "timeout", loading


def test_present_but_not_actionable_is_timeout():
    ev = {**TIMEOUT, **SETTLED, "selector": "#submit", "match_count": 1, "match_visible": False}
    assert classify(ev) == "timeout"


def test_strict_mode_violation_means_the_locator_is_broken():
    ev = {"playwright": True, "exception": "Error", "message": "strict mode violation: resolved to 3 elements",
          "selector": "button", "match_count": 3}
    assert classify(ev) == "element_not_found"


def test_navigation_statuses():
    nav = {"playwright": True, "navigation": True, "exception": "PageCheck"}
    assert classify({**nav, "http_status": 404}) == "navigation_error"
    assert classify({**nav, "http_status": 410}) == "navigation_error"
    assert classify({**nav, "http_status": 503}) == "navigation_error"
    assert classify({**nav, "http_status": 401}) == "authentication_failure"
    assert classify({**nav, "http_status": 403}) == "authentication_failure"


def test_network_errors_and_navigation_timeouts():
    nav = {"playwright": True, "navigation": True, "exception": "Error"}
    assert classify({**nav, "message": "Page.goto: net::ERR_CONNECTION_REFUSED at http://x"}) == "navigation_error"
    assert classify({**nav, "message": "net::ERR_NAME_NOT_RESOLVED"}) == "navigation_error"
    assert classify({**nav, "exception": "TimeoutError", "message": "Timeout 15000ms exceeded."}) == "timeout"


def test_redirect_to_login_page_is_authentication_failure():
    ev = {"playwright": True, "navigation": True, "exception": "PageCheck", "http_status": 200,
          "requested_url": "http://x/account", "url": "http://x/login?next=/account"}
    assert classify(ev) == "authentication_failure"


def test_login_wall_instead_of_expected_element():
    ev = {**TIMEOUT, **SETTLED, "selector": "#orders", "match_count": 0, "login_form": True, "login_expected": False}
    assert classify(ev) == "authentication_failure"


def test_login_form_is_not_a_failure_when_the_task_logs_in_itself():
    # the task fills a login form whose field was renamed: the locator broke, not the session
    ev = {**TIMEOUT, **SETTLED, "selector": "#user", "match_count": 0, "login_form": True, "login_expected": True}
    assert classify(ev) == "element_not_found"
    # ...but once it typed the password and is still on a login form, the credentials failed
    assert classify({**ev, "password_filled": True}) == "authentication_failure"
    assert classify({**ev, "auth_error_text": True}) == "authentication_failure"


def test_captcha_wins_over_other_signals():
    ev = {**TIMEOUT, **SETTLED, "selector": "#submit", "match_count": 0, "captcha": "recaptcha", "http_status": 403}
    assert classify(ev) == "captcha_detected"


def test_blocked_navigation_is_a_script_error():
    ev = {"playwright": False, "blocked": True, "navigation": True, "message": "file:// blocked"}
    assert classify(ev) == "script_error"


def test_closed_page_is_a_script_error():
    ev = {"playwright": True, "exception": "Error", "message": "Target page, context or browser has been closed"}
    assert classify(ev) == "script_error"


@pytest.mark.parametrize("url,expected", [
    ("https://x.com/login", True), ("https://x.com/users/sign_in?next=/", True), ("https://x.com/signin", True),
    ("https://x.com/auth/", True), ("https://x.com/products/login-gadgets", True),
    ("https://x.com/blog/author", False), ("https://x.com/", False), (None, False),
])
def test_is_login_url(url, expected):
    assert is_login_url(url) is expected


def test_describe_gives_a_reason():
    assert "no element matches #a" in describe("element_not_found", {"selector": "#a", "match_count": 0})
    assert "401" in describe("authentication_failure", {"http_status": 401})


def test_masking_replaces_secret_values_everywhere():
    secrets = secret_values({"password": "hunter22", "user": {"pin": 1234}})
    assert mask_secrets({"value": "hunter22", "msg": "typed hunter22 into #pw", "n": ["1234"]}, secrets) == {
        "value": "***", "msg": "typed *** into #pw", "n": ["***"],
    }


def test_masking_covers_a_secret_as_it_appears_in_a_url():
    secrets = secret_values({"password": "p@ss word/1"})
    url = "https://site.test/login?pw=p%40ss%20word%2F1&form=p%40ss+word%2F1"
    assert mask_secrets({"url": url}, secrets) == {"url": "https://site.test/login?pw=***&form=***"}
