"""The instrumented page records every action as a step, with line, selector and fingerprint."""

from __future__ import annotations

import textwrap

import pytest

from tasks_app.runner import BrowserPool, RunSpec, execute

from .sites import serve

SHOP = """<html><head><title>Shop</title></head><body>
<nav><a href="/cart" data-testid="cart-link">Cart</a></nav>
<ul id="products">
  <li class="product"><span class="name">Tea</span> <span class="price">$3</span> <button>Add</button></li>
  <li class="product"><span class="name">Coffee</span> <span class="price">$5</span> <button>Add</button></li>
</ul>
<label for="q">Search</label><input id="q" name="q" placeholder="Search products">
<select id="size"><option value="s">Small</option><option value="l">Large</option></select>
<input type="checkbox" id="gift"> <label for="gift">Gift wrap</label>
<img src="/logo.png" alt="Shop logo" width="10" height="10">
<p id="status"></p>
<script>document.querySelectorAll('li button').forEach(b => b.onclick = () => {
  document.getElementById('status').textContent = 'Added ' + b.parentElement.querySelector('.name').textContent })</script>
</body></html>"""

CODE = textwrap.dedent("""
    from playwright.sync_api import expect

    def run(page, params):
        page.goto(params["base"] + "/")
        page.get_by_placeholder("Search products").fill("tea")
        page.get_by_label("Search").press("Enter")
        page.select_option("#size", "l")
        page.get_by_label("Gift wrap").check()
        row = page.locator("li.product").filter(has_text="Coffee")
        row.get_by_role("button", name="Add").click()
        expect(page.locator("#status")).to_have_text("Added Coffee")
        names = page.locator(".name").all_inner_texts()
        first = page.locator(".price").first.inner_text()
        second = page.locator(".price").nth(1).text_content()
        alt = page.get_by_alt_text("Shop logo").get_attribute("alt")
        visible = page.is_visible("#status")
        href = page.get_by_test_id("cart-link").get_attribute("href")
        return {"names": names, "prices": [first, second], "alt": alt, "visible": visible,
                "href": href, "title": page.title(), "size": page.input_value("#size")}
""")


@pytest.fixture(scope="module")
def pool():
    with BrowserPool() as p:
        yield p


@pytest.fixture(scope="module")
def shop_run(pool):
    streamed = []
    with serve({"/": SHOP, "/logo.png": b""}) as site:
        result = execute(RunSpec(code=CODE, params={"base": site.url}, secrets={}, action_timeout_ms=10000), browser=pool,
                         on_step=streamed.append)
    return result, streamed


def test_run_succeeds_and_returns_output(shop_run):
    result, _ = shop_run
    assert result.status == "succeeded", (result.error_message, result.logs[-2000:])
    assert result.output == {"names": ["Tea", "Coffee"], "prices": ["$3", "$5"], "alt": "Shop logo",
                             "visible": True, "href": "/cart", "title": "Shop", "size": "l"}


def test_steps_carry_line_action_and_readable_selector(shop_run):
    result, _ = shop_run
    got = [(s.line, s.action, s.selector) for s in result.steps]
    assert got == [
        (5, "goto", None),
        (6, "fill", 'get_by_placeholder("Search products")'),
        (7, "press", 'get_by_label("Search")'),
        (8, "select_option", "#size"),
        (9, "check", 'get_by_label("Gift wrap")'),
        (11, "click", 'locator("li.product").filter(has_text="Coffee").get_by_role("button", name="Add")'),
        (13, "all_inner_texts", ".name"),
        (14, "inner_text", 'locator(".price").first'),
        (15, "text_content", 'locator(".price").nth(1)'),
        (16, "get_attribute", 'get_by_alt_text("Shop logo")'),
        (17, "is_visible", "#status"),
        (18, "get_attribute", 'get_by_test_id("cart-link")'),
        (20, "input_value", "#size"),
    ]
    assert result.steps[3].args == {"value": "l"} and result.steps[2].args == {"key": "Enter"}
    assert all(s.outcome == "ok" and s.duration_ms >= 0 for s in result.steps)
    assert result.steps[5].step_key == '11:click:locator("li.product").filter(has_text="Coffee").get_by_role("button", name="Add")'
    assert [s.index for s in result.steps] == list(range(len(result.steps)))


def test_element_steps_have_fingerprints_with_design_property_names(shop_run):
    result, _ = shop_run
    click = result.steps[5]
    fp = click.fingerprint
    assert fp["tag"] == "BUTTON" and fp["text"] == "Add" and fp["is_button"] == "yes"
    assert fp["xpath"] == "/html[1]/body[1]/ul[1]/li[2]/button[1]"
    assert fp["idxpath"] == "//*[@id='products']/li[2]/button[1]"
    assert fp["width"] > 0 and fp["height"] > 0 and fp["x"] >= 0 and fp["y"] > 0
    assert fp["neighbor_text"] == "$5" and fp["role"] == "button"
    search = result.steps[1].fingerprint
    assert search["placeholder"] == "Search products" and search["id"] == "q" and search["name"] == "q"
    assert result.steps[11].fingerprint["data_testid"] == "cart-link"
    assert result.steps[11].fingerprint["href"] == "/cart"
    assert result.steps[0].fingerprint is None  # goto acts on no element
    assert result.steps[10].fingerprint is None  # is_visible does not wait for an element


def test_steps_stream_live_in_order(shop_run):
    result, streamed = shop_run
    assert [s.to_dict() for s in streamed] == [s.to_dict() for s in result.steps]


def test_result_round_trips_through_json(shop_run):
    import json

    from tasks_app.runner import RunResult

    result, _ = shop_run
    again = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_page_behaves_like_a_playwright_page(pool):
    code = textwrap.dedent("""
        from playwright.sync_api import Page, Locator
        def run(page, params):
            page.goto(params["base"] + "/")
            assert isinstance(page, Page) and isinstance(page.locator("li"), Locator)
            page.keyboard.press("Tab")
            count = page.locator("li").count()
            rows = [li.locator(".name").inner_text() for li in page.locator("li").all()]
            return {"count": count, "rows": rows, "url": page.url, "ctx_pages": len(page.context.pages),
                    "eval": page.evaluate("1 + 1")}
    """)
    with serve({"/": SHOP}) as site:
        result = execute(RunSpec(code=code, params={"base": site.url}, secrets={}), browser=pool)
    assert result.status == "succeeded", result.error_message
    assert result.output["count"] == 2 and result.output["rows"] == ["Tea", "Coffee"]
    assert result.output["eval"] == 2 and result.output["ctx_pages"] == 1
    assert [s.selector for s in result.steps if s.action == "inner_text"] == ['locator("li").nth(0).locator(".name")',
                                                                            'locator("li").nth(1).locator(".name")']


def test_runs_do_not_share_cookies(pool):
    code = textwrap.dedent("""
        def run(page, params):
            page.goto(params["base"] + "/")
            before = page.evaluate("document.cookie")
            page.evaluate("document.cookie = 'sid=run-' + Math.random()")
            return before
    """)
    with serve({"/": "<p>hi</p>"}) as site:
        first = execute(RunSpec(code=code, params={"base": site.url}, secrets={}), browser=pool)
        second = execute(RunSpec(code=code, params={"base": site.url}, secrets={}), browser=pool)
    assert first.output == "" and second.output == ""


SUBMIT_CODE = textwrap.dedent("""
    def run(page, params):
        page.goto(params["base"] + "/form")
        page.click("#send")
        page.frame_locator("#framed").locator("#send").click()
        return page.frame_locator("#framed").locator("p").inner_text()
""")


def test_a_click_that_submits_a_form_is_recorded_on_the_page_its_answer_loads(pool):
    """The answer comes 0.4 s after the click: Playwright's click returns before the page (or the frame) changes,
    and the step must not say it ran on either page by a race (the wrong-heal check compares them)."""
    from .sites import Response

    form = '<form method="post" action="/answer"><button id="send">Send</button></form>'
    pages = {
        "/form": form,
        "/answer": Response('<p>Thanks</p><iframe id="framed" src="/form"></iframe>', delay=0.4),
    }
    with serve(pages) as site:
        result = execute(RunSpec(code=SUBMIT_CODE, params={"base": site.url}, secrets={}, action_timeout_ms=10000),
                         browser=pool)
    assert result.status == "succeeded", (result.error_message, result.logs[-2000:])
    page_click, frame_click = (step for step in result.steps if step.action == "click")
    assert page_click.url == f"{site.url}/answer"
    assert frame_click.url == f"{site.url}/answer" and frame_click.frame_url == f"{site.url}/answer"
