"""Every failure type, produced by a real page in real Chromium and classified by the runner."""

from __future__ import annotations

import textwrap

import pytest

from tasks_app.runner import BrowserPool, RunSpec, execute

from .sites import Response, closed_port, hang, redirect, serve

LOGIN = """<form action="/session" method="post"><h1>Sign in</h1>
<input name="user" id="user"><input type="password" name="password" id="password">
<button type="submit">Sign in</button></form>"""
CONTACT = """<h1>Contact</h1><input id="name"><button id="send">Send</button><div class="confirmation"></div>"""


@pytest.fixture(scope="module")
def pool():
    with BrowserPool() as p:
        yield p


def run(pool, code, **kwargs):
    # generous for steps that should pass (busy CI machines); the failing calls set a short timeout
    kwargs.setdefault("action_timeout_ms", 10000)
    kwargs.setdefault("navigation_timeout_ms", 5000)
    kwargs.setdefault("wall_timeout_s", 30)
    return execute(RunSpec(code=textwrap.dedent(code), params=kwargs.pop("params", {}), secrets={}, **kwargs),
                   browser=pool)


def goto_code(path):
    return f"""
    def run(page, params):
        page.goto(params["base"] + {path!r})
        return "reached"
    """


def click_on(pool, page: str, selector: str):
    """The result of a task that opens `page` and clicks `selector` (with a short timeout: it is meant to fail)."""
    with serve({"/": page}) as site:
        return run(pool, f"""
            def run(page, params):
                page.goto(params["base"] + "/")
                page.click({selector!r}, timeout=1500)
            """, params={"base": site.url})


def test_missing_element_is_element_not_found(pool):
    with serve({"/": CONTACT}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                page.fill("#name", "Ann")
                page.click("#submit", timeout=1500)
            """, params={"base": site.url})
    assert result.status == "failed"
    assert result.error_type == "element_not_found"
    f = result.failure
    assert (f.type, f.action, f.selector, f.line) == ("element_not_found", "click", "#submit", 5)
    assert f.details["match_count"] == 0
    assert f.screenshot_png_b64 and "<button" in f.dom_excerpt
    assert [s.outcome for s in result.steps] == ["ok", "ok", "error"]


def test_element_waiting_on_a_hanging_request_is_timeout(pool):
    page = """<div class="spinner" aria-busy="true">Loading…</div><div id="out"></div>
    <script>fetch('/api/slow').then(r => r.text()).then(t => { out.innerHTML = '<button id=go>Go</button>' })</script>"""
    with serve({"/": page, "/api/slow": hang()}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                page.locator("#go").click(timeout=1500)
            """, params={"base": site.url})
    assert result.error_type == "timeout"
    assert result.failure.details.get("busy") or result.failure.details.get("pending_requests")


def test_hidden_element_is_timeout(pool):
    result = click_on(pool, '<button id="go" style="display:none">Go</button>', "#go")
    assert result.error_type == "timeout"
    assert result.failure.details["match_count"] == 1


def test_an_element_under_a_banner_is_timeout_naming_the_banner(pool):
    page = CONTACT + (
        '<div id="consent" class="cmp" style="position:fixed;inset:0"><p>We use cookies.</p><button>OK</button></div>'
    )
    result = click_on(pool, page, "#send")
    assert result.error_type == "timeout"
    layer = result.failure.details["covered_by"]
    assert (layer["tag"], layer["id"], layer["xpath"]) == ("div", "consent", "/html[1]/body[1]/div[2]")
    assert layer["selector"] == "#consent"
    assert layer["text"] == "We use cookies. OK"
    assert result.failure.message.startswith('#send is covered by <div id="consent"> (\u201cWe use cookies. OK\u201d)')


def test_an_element_that_is_only_hidden_is_not_covered(pool):
    result = click_on(pool, '<button id="go" style="visibility:hidden">Go</button>', "#go")
    assert result.error_type == "timeout"
    assert result.failure.details.get("covered_by") is None


def test_a_disabled_button_of_a_web_component_is_not_covered_by_its_own_host(pool):
    page = """<shop-buy></shop-buy><button id="close">Close</button><script>customElements.define("shop-buy",
      class extends HTMLElement { connectedCallback() {
        this.attachShadow({mode: "open"}).innerHTML = '<button id="buy" disabled>Buy</button>'; } });</script>"""
    result = click_on(pool, page, "#buy")
    assert result.error_type == "timeout"
    assert result.failure.details["match_count"] == 1
    assert result.failure.details.get("covered_by") is None


def test_a_layer_inside_a_web_component_is_found_inside_it(pool):
    page = """<shop-cart></shop-cart><script>customElements.define("shop-cart", class extends HTMLElement {
      connectedCallback() { this.attachShadow({mode: "open"}).innerHTML = '<button id="pay">Pay</button>'
        + '<div id="promo" style="position:fixed;inset:0">Sale! <button>Close</button></div>'; } });</script>"""
    result = click_on(pool, page, "#pay")
    layer = result.failure.details["covered_by"]
    assert (layer["id"], layer["xpath"]) == ("promo", "/html[1]/body[1]/shop-cart[1]/div[1]")
    assert layer["selector"] == ""  # a CSS selector cannot reach into the shadow root by itself


def test_page_that_never_loads_is_timeout(pool):
    with serve({"/hang": hang()}) as site:
        result = run(pool, goto_code("/hang"), params={"base": site.url}, navigation_timeout_ms=1500)
    assert result.error_type == "timeout"
    assert result.failure.action == "goto"


@pytest.mark.parametrize("status", [404, 410, 500, 503])
def test_error_status_is_navigation_error(pool, status):
    with serve({"/x": Response("<h1>nope</h1>", status=status)}) as site:
        result = run(pool, goto_code("/x"), params={"base": site.url})
    assert result.error_type == "navigation_error"
    assert result.failure.http_status == status


def test_connection_refused_is_navigation_error(pool):
    result = run(pool, goto_code("/"), params={"base": f"http://127.0.0.1:{closed_port()}"})
    assert result.error_type == "navigation_error"
    assert "ERR_CONNECTION_REFUSED" in result.error_message


@pytest.mark.parametrize("status", [401, 403])
def test_unauthorised_status_is_authentication_failure(pool, status):
    with serve({"/account": Response("denied", status=status)}) as site:
        result = run(pool, goto_code("/account"), params={"base": site.url})
    assert result.error_type == "authentication_failure"
    assert result.failure.http_status == status


def test_redirect_to_login_is_authentication_failure(pool):
    with serve({"/account": redirect("/login?next=/account"), "/login": LOGIN}) as site:
        result = run(pool, goto_code("/account"), params={"base": site.url})
    assert result.error_type == "authentication_failure"
    assert "/login" in result.failure.url


def test_login_wall_appearing_mid_task_is_authentication_failure(pool):
    dashboard = f"""<button id="orders" onclick="document.body.innerHTML = LOGIN">Orders</button>
    <script>const LOGIN = {LOGIN!r};</script>"""
    with serve({"/dashboard": dashboard}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/dashboard")
                page.click("#orders")
                return page.inner_text("#orders-table", timeout=1500)
            """, params={"base": site.url})
    assert result.error_type == "authentication_failure"
    assert result.failure.details["login_form"] is True


def test_a_login_form_inside_a_web_component_is_a_login_wall(pool):
    page = """<sign-in></sign-in><script>customElements.define("sign-in", class extends HTMLElement {
      connectedCallback() { this.attachShadow({mode: "open"}).innerHTML = '<input name="u"><input type="password">'; } });
    </script>"""
    with serve({"/account": page}) as site:
        result = run(pool, goto_code("/account"), params={"base": site.url})
    assert result.error_type == "authentication_failure"


def test_login_page_the_task_expects_is_not_an_authentication_failure(pool):
    with serve({"/login": LOGIN}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/login")
                page.fill("#username", params["secrets"].get("user", "ann"), timeout=1500)
            """, params={"base": site.url})
    assert result.error_type == "element_not_found"


@pytest.mark.parametrize("body", [
    '<h1>One more step</h1><iframe src="/recaptcha/api2/anchor?k=x" width="304" height="78"></iframe>',
    '<div class="h-captcha" data-sitekey="10000000-ffff" style="width:300px;height:80px">hcaptcha</div>',
    "<h1>Please verify you are human</h1><p>Press and hold the button.</p>",
])
def test_captcha_page_is_captcha_detected(pool, body):
    with serve({"/shop": body, "/recaptcha/api2/anchor": "<p>captcha</p>"}) as site:
        result = run(pool, goto_code("/shop"), params={"base": site.url})
    assert result.error_type == "captcha_detected"
    assert result.failure.details["captcha"]


def test_captcha_appearing_instead_of_element(pool):
    widget = "<div class=cf-turnstile style=width:300px;height:65px>x</div>"
    page = f"""<button id="buy" onclick="document.body.innerHTML='{widget}'">Buy</button>"""
    with serve({"/": page}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                page.click("#buy")
                page.click("#confirm", timeout=1500)
            """, params={"base": site.url})
    assert result.error_type == "captcha_detected"


def test_python_error_in_task_is_script_error_with_line(pool):
    with serve({"/": CONTACT}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                total = {"a": 1}
                return total["b"]
            """, params={"base": site.url})
    assert result.status == "failed"
    assert result.error_type == "script_error"
    assert result.error_message.startswith("KeyError: 'b' (line 5)")
    assert result.failure.line == 5


def test_failed_assertion_is_script_error(pool):
    result = run(pool, """
        def run(page, params):
            assert 1 + 1 == 3, "math changed"
        """)
    assert result.error_type == "script_error"
    assert "AssertionError: math changed" in result.error_message


def test_syntax_error_and_missing_run_are_script_errors(pool):
    result = run(pool, "def run(page, params)\n    return 1\n")
    assert result.error_type == "script_error" and "SyntaxError" in result.error_message
    result = run(pool, "def main(page):\n    return 1\n")
    assert result.error_type == "script_error" and "run(page, params)" in result.error_message


def test_failure_inside_try_is_the_scripts_business(pool):
    with serve({"/": CONTACT}) as site:
        result = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                try:
                    page.click("#cookie-banner-accept", timeout=300)
                except Exception:
                    pass
                page.fill("#name", "Ann")
                return "ok"
            """, params={"base": site.url}, handover_on=["element_not_found"])
    assert result.status == "succeeded"
    assert result.failure is None
    assert [s.outcome for s in result.steps] == ["ok", "error", "ok"]
