"""Screenshots of the review dashboard for the README: docs/screenshots/{queue,event,task,queue-phone}.png.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots]

Starts a throwaway Anchor (daphne + worker on a temporary SQLite database, see tests/browser/live.py),
fills it through the worker with a few tasks and healing events that go through their real states,
logs in as a reviewer in Chromium and photographs the queue, an event waiting for review and its task.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REVIEWER = ("rita", "pw-rita-123!")

# What the failing page looked like: the demo contact form after its button changed.
FAILURE_PAGE = """<!doctype html><html><body style="font-family: sans-serif; margin: 40px; background: #fafafa">
<h1>Contact us</h1><form style="display: grid; gap: 12px; max-width: 420px">
<label>Name <input value="Ada" style="width: 100%"></label>
<label>Email <input value="ada@example.com" style="width: 100%"></label>
<label>Message <textarea style="width: 100%">Hello from Anchor</textarea></label>
<button data-test="send" style="padding: 10px; background: #0b57d0; color: white; border: 0">Send</button>
</form></body></html>"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, anchor_started

    with sync_playwright() as p, anchor_started() as live:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        failure_png = _failure_screenshot(browser)

        live.enqueue("tests.browser.scenario.users_make", [REVIEWER], reviewers=[REVIEWER[0]])
        tasks = [live.enqueue("tests.browser.scenario.task_make_id", name)
                 for name in ("Contact form", "Newsletter signup", "Checkout", "Partner portal login")]
        for task, final in zip(tasks[1:], ("deployed", "failed", "rejected")):
            if final == "rejected":
                event = live.enqueue("tests.browser.scenario.event_pending_make", task, screenshot_b64=failure_png)
                live.enqueue("tests.browser.scenario.event_reject_as", event, REVIEWER[0],
                             "Chose the Reset button; the form is cleared instead of sent.")
            else:
                live.enqueue("tests.browser.scenario.event_pending_make", task, screenshot_b64=failure_png, final=final)
        live.enqueue("tests.browser.scenario.run_steps_play", tasks[0], delay_s=0.0)
        event_id = live.enqueue("tests.browser.scenario.event_pending_make", tasks[0], screenshot_b64=failure_png)

        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{live.url}/accounts/login/")
        page.get_by_label("Username").fill(REVIEWER[0])
        page.get_by_label("Password").fill(REVIEWER[1])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("body[data-live-ready]")
        page.screenshot(path=str(out / "queue.png"))

        page.goto(f"{live.url}/events/{event_id}/")
        page.wait_for_selector("body[data-live-ready]")
        page.screenshot(path=str(out / "event.png"), full_page=True)

        page.goto(f"{live.url}/tasks/{tasks[0]}/?a=1&b=2")
        page.wait_for_selector("body[data-live-ready]")
        page.screenshot(path=str(out / "task.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        phone.context.add_cookies(page.context.cookies())
        phone.goto(f"{live.url}/")
        phone.wait_for_selector("body[data-live-ready]")
        phone.screenshot(path=str(out / "queue-phone.png"))
        browser.close()
    for name in ("queue", "event", "task", "queue-phone"):
        print(out / f"{name}.png")
    return 0


def _failure_screenshot(browser) -> str:
    page = browser.new_page(viewport={"width": 640, "height": 420})
    page.set_content(FAILURE_PAGE)
    png = page.screenshot()
    page.close()
    return base64.b64encode(png).decode()


if __name__ == "__main__":
    sys.exit(main())
