"""The dashboard is accessible: every page a user sees passes axe-core's WCAG 2.1 A and AA rules and its best
practices, a keyboard alone reaches and operates a heal's Approve and Reject, and the live queue never drops the
focus of the person using it.

axe-core is vendored in tests/browser/axe/ (see its README), so this runs offline; it is added to each page as an
init script, which the dashboard's Content-Security-Policy (script-src 'self') does not block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import REVIEWER, wait_live

pytestmark = pytest.mark.browser

AXE = Path(__file__).with_name("axe") / "axe.min.js"
# WCAG 2.1 A and AA, and axe's best practices beside them (headings in order, content in landmarks, one main).
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@pytest.fixture
def axe_page(page):
    assert AXE.is_file(), f"axe-core is missing: {AXE} should be in the repository (tests/browser/axe/README.md)"
    page.add_init_script(path=str(AXE))
    return page


def violations(page) -> list[str]:
    """axe-core's violations of RULES on the page as it is now, one line per rule: its id, impact, and where."""
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", RULES)
    return [
        f"{v['id']} ({v['impact']}) ×{len(v['nodes'])}: {', '.join(' '.join(n['target']) for n in v['nodes'][:5])}"
        for v in result["violations"]
    ]


def _submit(page, form: str) -> None:
    with page.expect_navigation():
        page.locator(f"{form} [type=submit]").last.click()


def test_every_dashboard_page_passes_axe(axe_page, anchor_live, login, live_task):
    page = axe_page
    found: dict[str, list[str]] = {}

    def audit(name: str) -> None:
        page.wait_for_load_state()
        found[name] = violations(page)

    pending = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task)
    deployed = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task, final="deployed")

    page.goto(f"{anchor_live.url}/accounts/login/")
    audit("login")
    page.get_by_label("Username").fill(REVIEWER[0])
    page.get_by_label("Password").fill("not the password")
    _submit(page, "main form")
    audit("login, refused")
    login(page, REVIEWER)

    pages = {
        "queue": "/", "queue, bad filters": "/?status=nope&until=not+a+date", "overview": "/overview/",
        "tasks": "/tasks/", "new task": "/tasks/new/", "task": f"/tasks/{live_task}/",
        "task, versions compared": f"/tasks/{live_task}/?a=1&b=2", "task, bad comparison": f"/tasks/{live_task}/?a=0&b=x",
        "task settings": f"/tasks/{live_task}/edit/", "heal waiting for review": f"/events/{pending}/",
        "heal deployed": f"/events/{deployed}/", "webhooks": "/webhooks/", "new webhook": "/webhooks/new/",
        "API keys": "/api-keys/", "not found": "/no-such-page/",
    }
    for name, path in pages.items():
        page.goto(anchor_live.url + path)
        audit(name)
    page.goto(f"{anchor_live.url}/events/{pending}/")
    page.get_by_role("button", name="Inline").click()
    audit("heal, inline diff")
    page.get_by_role("link", name=re.compile(r"^run_")).first.click()
    audit("run")

    page.goto(f"{anchor_live.url}/tasks/new/")
    _submit(page, "main form")
    audit("new task, refused")
    page.goto(f"{anchor_live.url}/webhooks/new/")
    page.locator("input[name=url]").fill("ftp://example.test/")
    _submit(page, "main form")
    audit("new webhook, refused")
    page.locator("input[name=url]").fill(f"{anchor_live.url}/hook")
    _submit(page, "main form")
    audit("webhook secret, shown once")
    endpoint = re.search(r"/webhooks/(\w+)/", page.url).group(1)
    for name, path in {"webhook": "", "webhook settings": "edit/", "delete webhook": "delete/"}.items():
        page.goto(f"{anchor_live.url}/webhooks/{endpoint}/{path}")
        audit(name)

    page.goto(f"{anchor_live.url}/api-keys/")
    _submit(page, "main form")
    audit("new API key, refused")
    page.locator("input[name=name]").fill("axe")
    _submit(page, "main form")
    audit("API key, shown once")
    page.goto(f"{anchor_live.url}/api-keys/")
    page.locator("a[href$='/revoke/']").first.click()
    audit("revoke API key")

    page.goto(f"{anchor_live.url}/tasks/new/")
    page.locator("textarea[name=code]").evaluate("(code, size) => code.value = 'x'.repeat(size)", 6 * 1024 * 1024)
    _submit(page, "main form")
    expect(page.get_by_role("heading", name="Form too large")).to_be_visible()
    audit("form too large")

    failing = {name: rules for name, rules in found.items() if rules}
    assert not failing, "axe-core found:\n" + "\n".join(
        f"  {name}: {rule}" for name, rules in failing.items() for rule in rules
    )


def test_a_keyboard_alone_reaches_and_operates_reject(page, anchor_live, login, live_task):
    event_id = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task)
    login(page, REVIEWER, next_url=f"/events/{event_id}/")
    wait_live(page)

    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement; return {id: e.id, html: e.outerHTML.slice(0, 80),"
            " ring: e.matches(':focus-visible') && getComputedStyle(e).outlineStyle !== 'none'} }"
        )
        assert focused["ring"], f"{focused['html']} has the focus but shows no focus ring"
        order.append(focused["id"])
        if focused["id"] == "reject-comment":
            break
    assert order.index("approve-comment") < order.index("approve-button") < order.index("reject-comment"), order

    page.keyboard.type("Not the button we meant")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "reject-button"
    page.keyboard.press("Enter")
    expect(page.locator("#event-status")).to_have_text("Rejected")


def test_a_live_row_change_keeps_the_keyboard_focus_on_that_row(page, anchor_live, login, live_task):
    event_id = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task)
    login(page, REVIEWER)
    wait_live(page)
    link = page.locator(f'tr[data-id="{event_id}"] a').first
    link.focus()

    assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", event_id, REVIEWER[0]) == "deployed"

    expect(page.locator(f'tr[data-id="{event_id}"]')).to_contain_text("Deployed")
    expect(link).to_be_focused()


def test_a_row_that_leaves_a_filtered_queue_hands_the_focus_to_the_next(page, anchor_live, login, live_task):
    older = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task)
    newer = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task)
    login(page, REVIEWER)
    page.goto(f"{anchor_live.url}/?status=pending_review&task={live_task}")
    wait_live(page)
    page.locator(f'tr[data-id="{newer}"] a').first.focus()

    assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", newer, REVIEWER[0]) == "deployed"

    expect(page.locator(f'tr[data-id="{newer}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-id="{older}"] a').first).to_be_focused()
