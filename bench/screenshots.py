"""Screenshots of the review dashboard for the README: docs/screenshots/{queue,event,task,queue-phone}.png.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots]

Starts a throwaway Anchor (daphne + worker on a temporary SQLite database, see tests/browser/live.py),
plays the real demo in it (`manage.py demo_play`: the demo tasks run on the demo site's version 1, the
site changes, the runs break and heal), logs in as a reviewer in Chromium and photographs the queue, the
heal waiting for review and the task whose heal was deployed. Nothing on them is made up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REVIEWER = ("rita", "pw-rita-123!")

EVENTS = """
import json
from healing_app.models import HealingEvent
pending = HealingEvent.objects.get(status="pending_review")
deployed = HealingEvent.objects.select_related("new_version").get(status="deployed")
print(json.dumps({"pending": pending.pk, "deployed_task": deployed.task_id, "deployed_version": deployed.new_version.number}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, anchor_started

    with sync_playwright() as p, anchor_started() as live:
        live.enqueue("tests.browser.scenario.users_make", [REVIEWER], reviewers=[REVIEWER[0]])
        print(live.manage("demo_play", timeout=900))
        events = live.shell_json(EVENTS)

        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{live.url}/accounts/login/")
        page.get_by_label("Username").fill(REVIEWER[0])
        page.get_by_label("Password").fill(REVIEWER[1])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("body[data-live-ready]")
        page.screenshot(path=str(out / "queue.png"))

        page.goto(f"{live.url}/events/{events['pending']}/")
        page.wait_for_selector("body[data-live-ready]")
        page.screenshot(path=str(out / "event.png"), full_page=True)

        version = events["deployed_version"]
        page.goto(f"{live.url}/tasks/{events['deployed_task']}/?a={version - 1}&b={version}")
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


if __name__ == "__main__":
    sys.exit(main())
