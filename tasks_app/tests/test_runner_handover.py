"""The hand-over channel: a run paused at its failing call is driven from the parent."""

from __future__ import annotations

import textwrap
import threading
import time

import pytest

from tasks_app.runner import BrowserPool, RunSpec, execute
from tasks_app.runner.sandbox import HandoverError

from .sites import Response, serve

# v2 of a contact page: the submit button lost its id and gained a test id.
FORM = """<h1>Contact</h1><form method="post" action="/send">
<label for="name">Name</label><input id="name" name="name">
<label for="token">Token</label><input id="token" name="token">
<button data-testid="send-btn" type="submit">Send</button>
<a href="/help">Help</a></form>"""

CODE = textwrap.dedent("""
    def run(page, params):
        page.goto(params["base"] + "/contact")
        page.fill("#name", params["name"])
        page.click("#submit", timeout=1500)
        return {"confirmation": page.inner_text(".confirmation")}
""")


def confirm(req):
    return Response(f'<p class="confirmation">Thanks {req.form.get("name")}</p>')


@pytest.fixture(scope="module")
def pool():
    with BrowserPool() as p:
        yield p


@pytest.fixture
def site():
    with serve({"/contact": FORM, "/send": confirm, "/help": "<h1>Help</h1>"}) as s:
        yield s


def spec(site, code=CODE, **kw):
    # generous for the steps that should pass (CI machines can be busy); failing calls set their own
    kw.setdefault("action_timeout_ms", 10000)
    return RunSpec(code=code, params={"base": site.url, "name": "Ann"}, secrets=kw.pop("secrets", {}),
                   handover_on=kw.pop("handover_on", ["element_not_found"]), **kw)


def test_retry_with_new_selector_continues_the_script_without_rerunning_steps(pool, site):
    seen = {}

    def agent(failure, handover):
        seen["failure"] = failure
        obs = handover.observe()
        button = next(e for e in obs["elements"] if e["tag"] == "BUTTON")
        candidates = handover.selector_for(button["ref"])
        seen["candidates"] = candidates
        bad = handover.retry_step(selector="#still-wrong", timeout_ms=300)
        assert not bad["ok"] and bad["error"]
        ok = handover.retry_step(selector=candidates[0]["selector"], timeout_ms=10000)
        assert ok["ok"], ok

    result = execute(spec(site), on_handover=agent, browser=pool)
    assert result.status == "healed", (result.error_message, result.logs[-2000:])
    assert result.recovered
    assert result.output == {"confirmation": "Thanks Ann"}
    assert site.hits["POST /send"] == 1 and site.hits["GET /contact"] == 1
    assert seen["failure"].type == "element_not_found" and seen["failure"].selector == "#submit"
    assert seen["candidates"][0] == {"selector": '[data-testid="send-btn"]', "kind": "test_id",
                                     "attribute": "data-testid", "value": "send-btn", "count": 1}
    steps = [(s.action, s.outcome) for s in result.steps]
    assert steps == [("goto", "ok"), ("fill", "ok"), ("click", "recovered"), ("inner_text", "ok")]
    recovered = result.steps[2]
    assert recovered.selector == '[data-testid="send-btn"]'
    assert recovered.recovery["original_selector"] == "#submit"
    assert recovered.fingerprint["tag"] == "BUTTON"
    assert result.failure.type == "element_not_found"  # the first failure is kept when healed
    assert result.handovers[0]["outcome"] == "retried"
    assert [c["op"] for c in result.handovers[0]["commands"]] == ["observe", "selector_for", "retry_step", "retry_step"]


def test_a_click_that_timed_out_on_the_page_it_led_to_is_not_done_twice(pool, site):
    site.pages["/contact"] = FORM.replace('data-testid="send-btn"', 'id="submit"')
    site.pages["/send"] = lambda req: Response(confirm(req).body, delay=3)  # the click's timeout is 1.5 s
    seen = {}

    def agent(failure, handover):
        seen["failure"] = failure
        seen["retry"] = handover.retry_step(timeout_ms=10000)
        assert handover.wait(loads_after=failure.details["loads_at_start"], timeout_ms=10000)["ok"]
        handover.resume(None)

    result = execute(spec(site, handover_on=["timeout", "element_not_found"]), on_handover=agent, browser=pool)
    assert result.status == "healed", (result.error_message, result.logs[-2000:])
    assert result.output == {"confirmation": "Thanks Ann"}
    assert site.hits["POST /send"] == 1
    failure = seen["failure"]
    assert failure.type == "timeout" and failure.details["action_done"] is True
    assert failure.details["url_at_start"] == site.url + "/contact" and failure.details["loads_at_start"] == 1
    assert failure.message.startswith("#submit was acted on, but the page it led to did not load in time")
    assert not seen["retry"]["ok"] and "could submit twice" in seen["retry"]["error"]


def test_resume_returns_the_agents_value_to_the_script(pool, site):
    code = textwrap.dedent("""
        def run(page, params):
            page.goto(params["base"] + "/contact")
            title = page.inner_text("h2.title", timeout=1500)
            return {"title": title}
    """)

    def agent(failure, handover):
        text = handover.act("inner_text", selector="h1")
        handover.resume(text["value"])

    result = execute(spec(site, code), on_handover=agent, browser=pool)
    assert result.status == "healed"
    assert result.output == {"title": "Contact"}
    assert result.steps[-1].outcome == "recovered" and result.steps[-1].recovery["how"] == "resume"


def test_agent_can_do_the_work_itself_then_resume(pool, site):
    def agent(failure, handover):
        obs = handover.observe()
        form = obs["forms"][0]
        assert {i["name"] for i in form["inputs"]} == {"name", "token"}
        assert obs["login_form"] is False and obs["captcha"] is None
        assert handover.fill_secret(selector="#token", secret_key="api.token")["ok"]
        r = handover.act("click", ref=form["submits"][0]["ref"])
        assert r["ok"], r
        handover.wait(load_state="load")
        handover.resume(None)

    code = CODE.replace('return {"confirmation": page.inner_text(".confirmation")}', 'return page.inner_text("p")')
    result = execute(spec(site, code, secrets={"api": {"token": "s3cret-tk"}}), on_handover=agent, browser=pool)
    assert result.status == "healed", result.error_message
    assert result.output == "Thanks Ann"
    assert site.requests[-1].form["token"] == "s3cret-tk"  # the child filled it; the parent never sent it
    assert "s3cret-tk" not in str(result.handovers)


def test_abort_fails_the_run_with_the_original_type(pool, site):
    result = execute(spec(site), on_handover=lambda f, h: h.abort("no idea"), browser=pool)
    assert result.status == "failed"
    assert result.error_type == "element_not_found"
    assert "no idea" in result.error_message
    assert not result.recovered
    assert site.hits["POST /send"] == 0


def test_agent_returning_without_recovery_aborts(pool, site):
    result = execute(spec(site), on_handover=lambda f, h: h.observe(), browser=pool)
    assert result.status == "failed" and result.error_type == "element_not_found"
    assert result.handovers[0]["outcome"] == "aborted"


def test_crashing_agent_does_not_take_the_caller_down(pool, site):
    def agent(failure, handover):
        raise RuntimeError("agent bug")

    result = execute(spec(site), on_handover=agent, browser=pool)
    assert result.status == "failed"
    assert [c["op"] for c in result.handovers[0]["commands"]] == ["agent_error", "abort"]


def test_failure_types_not_listed_are_not_handed_over(pool, site):
    calls = []
    result = execute(spec(site, handover_on=["timeout"]), on_handover=lambda f, h: calls.append(f), browser=pool)
    assert calls == [] and result.status == "failed" and result.error_type == "element_not_found"


def test_navigation_failure_can_be_recovered_with_a_new_url(pool, site):
    code = textwrap.dedent("""
        def run(page, params):
            page.goto(params["base"] + "/contact-us")
            return page.inner_text("h1")
    """)

    def agent(failure, handover):
        assert failure.type == "navigation_error" and failure.http_status == 404
        assert handover.retry_step(url=handover_base + "/contact")["ok"]

    handover_base = site.url
    result = execute(spec(site, code, handover_on=["navigation_error"]), on_handover=agent, browser=pool)
    assert result.status == "healed"
    assert result.output == "Contact"


def test_second_failure_goes_through_a_second_handover(pool, site):
    code = textwrap.dedent("""
        def run(page, params):
            page.goto(params["base"] + "/contact")
            page.fill("#full-name", "Ann", timeout=1500)
            page.click("#submit", timeout=1500)
            return page.inner_text("p")
    """)
    fixes = {"#full-name": "#name", "#submit": '[data-testid="send-btn"]'}

    def agent(failure, handover):
        assert handover.retry_step(selector=fixes[failure.selector], timeout_ms=10000)["ok"]

    result = execute(spec(site, code), on_handover=agent, browser=pool)
    assert result.status == "healed"
    assert result.output == "Thanks Ann"
    assert len(result.handovers) == 2
    assert [s.outcome for s in result.steps] == ["ok", "recovered", "recovered", "ok"]


def test_observe_returns_fingerprints_links_and_forms(pool, site):
    seen = {}

    def agent(failure, handover):
        seen["obs"] = handover.observe()
        seen["png"] = handover.screenshot()
        handover.abort("just looking")

    execute(spec(site), on_handover=agent, browser=pool)
    obs = seen["obs"]
    assert obs["url"].endswith("/contact") and obs["title"] == "" and obs["readyState"] == "complete"
    button = next(e for e in obs["elements"] if e["tag"] == "BUTTON")
    for key in ("tag", "text", "xpath", "idxpath", "x", "y", "width", "height", "is_button", "neighbor_text",
                "visible", "enabled", "ref", "data_testid"):
        assert key in button, key
    assert button["is_button"] == "yes" and button["data_testid"] == "send-btn"
    assert {"text": "Help", "href": site.url + "/help"}.items() <= obs["links"][0].items()
    assert obs["forms"][0]["method"] == "post"
    assert "Contact" in obs["text_excerpt"]
    assert seen["png"].startswith("iVBOR")  # PNG


def test_selector_for_returns_only_unique_selectors(pool):
    page = """<ul><li><button class="buy">Buy</button></li><li><button class="buy" id="buy-2">Buy</button></li></ul>
    <input name="q" placeholder="Search"><button aria-label="Close">x</button>"""
    seen = {}

    def agent(failure, handover):
        obs = handover.observe()
        refs = {e.get("id") or e.get("placeholder") or e.get("aria_label") or e["text"]: e["ref"] for e in obs["elements"]}
        seen["buy2"] = handover.selector_for(refs["buy-2"])
        seen["q"] = handover.selector_for(refs["Search"])
        seen["close"] = handover.selector_for(refs["Close"])
        handover.abort("done")

    with serve({"/": page}) as s:
        code = 'def run(page, params):\n    page.goto(params["base"] + "/")\n    page.click("#nope", timeout=1500)\n'
        execute(spec(s, code), on_handover=agent, browser=pool)
    kinds = [c["kind"] for c in seen["buy2"]]
    assert "text" not in kinds  # "Buy" matches two buttons
    assert seen["buy2"][0]["selector"] == "#buy-2"
    assert all(c["count"] == 1 for c in seen["buy2"] + seen["q"] + seen["close"])
    assert seen["close"][0] == {"selector": 'role=button[name="Close"s]', "kind": "role", "role": "button",
                                "name": "Close", "count": 1}
    assert 'input[name="q"]' in [c["selector"] for c in seen["q"]]


def test_observe_and_selectors_reach_into_open_shadow_roots(pool):
    # Two look-alike components: only a path through the host tells their buttons apart.
    page = """<main><shop-buy></shop-buy></main><aside><shop-buy></shop-buy></aside>
    <script>customElements.define("shop-buy", class extends HTMLElement { connectedCallback() {
      this.attachShadow({mode: "open"}).innerHTML = '<form><input name="q"><b>12.00</b> <i>x</i></form>'; } });</script>"""
    seen = {}

    def agent(failure, handover):
        obs = handover.observe()
        seen["obs"] = obs
        second = [e for e in obs["elements"] if e["tag"] == "I"][1]
        seen["css"] = [c for c in handover.selector_for(second["ref"]) if c["kind"] == "css"]
        handover.abort("done")

    with serve({"/": page}) as s:
        code = 'def run(page, params):\n    page.goto(params["base"] + "/")\n    page.click("#nope", timeout=1500)\n'
        execute(spec(s, code), on_handover=agent, browser=pool)
    prices = [e for e in seen["obs"]["elements"] if e.get("text") == "12.00"]
    assert [e["xpath"] for e in prices] == ["/html[1]/body[1]/main[1]/shop-buy[1]/form[1]/b[1]",
                                            "/html[1]/body[1]/aside[1]/shop-buy[1]/form[1]/b[1]"]
    assert [form["inputs"][0]["name"] for form in seen["obs"]["forms"]] == ["q", "q"]
    assert seen["css"] == [{"selector": "body > aside > shop-buy form > i", "kind": "css", "count": 1}]


def test_without_on_handover_failures_end_the_run(pool, site):
    result = execute(spec(site), browser=pool)
    assert result.status == "failed" and result.handovers == []


def test_a_cancel_stops_the_run_even_while_an_agent_holds_it(pool, site):
    """The hand-over pauses the wall clock, not a cancel: the agent's next command finds the run gone."""
    cancel = threading.Event()
    seen = {}

    def agent(failure, handover):
        cancel.set()
        started = time.monotonic()
        with pytest.raises(HandoverError):
            while time.monotonic() - started < 30:
                handover.observe()
        seen["after_s"] = time.monotonic() - started
        seen["closed"] = handover.closed  # what an agent looks at before asking its model for more

    result = execute(spec(site), on_handover=agent, browser=pool, cancel=cancel)
    assert (result.status, result.error_type) == ("failed", "cancelled")
    assert seen["closed"] is True
    assert result.failure.details["reason"] == "cancelled"
    assert seen["after_s"] < 10
    assert site.hits["POST /send"] == 0


def test_a_run_cancelled_before_its_code_was_sent_never_runs_it(pool, site):
    # The module's own first line calls the site: it would run within milliseconds of the code arriving.
    code = f"import urllib.request\nurllib.request.urlopen({site.url + '/contact'!r})\n" + CODE
    cancel = threading.Event()
    cancel.set()
    result = execute(spec(site, code=code), browser=pool, cancel=cancel)
    assert (result.status, result.error_type, result.failure.type) == ("failed", "cancelled", "cancelled")
    assert result.steps == [] and site.hits["GET /contact"] == 0
