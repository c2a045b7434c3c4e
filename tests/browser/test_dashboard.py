"""The review dashboard in Chromium against a live Anchor (daphne, an RQ worker, Redis): see conftest.py."""

from __future__ import annotations

import http.server
import re
import threading
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import MEMBER, REVIEWER, wait_live

pytestmark = pytest.mark.browser


def _pending_event(anchor_live, task_id: str) -> str:
    # The worker makes the event, moving it through its real states and broadcasts.
    return anchor_live.enqueue("tests.browser.scenario.event_pending_make", task_id)


def test_a_new_event_appears_in_the_queue_without_a_reload(page, anchor_live, login, live_task):
    login(page, REVIEWER)
    wait_live(page)
    page.evaluate("window.__sameDocument = true")
    pending_before = int(page.locator("#pending-count").inner_text())

    event_id = _pending_event(anchor_live, live_task)

    row = page.locator(f'tr[data-id="{event_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row).to_contain_text("Pending review")
    expect(page.locator("#pending-count")).to_have_text(str(pending_before + 1))
    assert page.locator("tbody#queue-rows tr").first.get_attribute("data-id") == event_id

    # A row already on the page changes in place when its event moves on.
    assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", event_id, REVIEWER[0]) == "deployed"
    expect(row).to_contain_text("Deployed")
    expect(page.locator("#pending-count")).to_have_text(str(pending_before))
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_a_filtered_queue_whose_last_row_leaves_says_nothing_matches(page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    login(page, REVIEWER)
    page.goto(f"{anchor_live.url}/?status=pending_review&task={live_task}")
    wait_live(page)
    expect(page.locator(f'tr[data-id="{event_id}"]')).to_be_visible()

    assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", event_id, REVIEWER[0]) == "deployed"
    expect(page.locator(f'tr[data-id="{event_id}"]')).to_have_count(0, timeout=10_000)
    expect(page.locator("tbody#queue-rows")).to_contain_text("No healing events match these filters.")


def test_rolling_back_asks_first(page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", event_id, REVIEWER[0]) == "deployed"
    login(page, REVIEWER, next_url=f"/tasks/{live_task}/")
    expect(page.locator("#current-version")).to_contain_text("v2")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator("#current-version")).to_contain_text("v2")
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator(".message-success")).to_contain_text("Version 1 is now current")
    expect(page.locator("#current-version")).to_contain_text("v1")
    assert questions[0].startswith("Make v1 the current version of Contact form") and len(questions) == 2


def test_reviewer_approves_from_the_diff_and_other_windows_follow(browser, page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)

    # A second person watches the task page and the event page in another browser context.
    other = browser.new_context()
    try:
        watcher = other.new_page()
        login(watcher, MEMBER, next_url=f"/tasks/{live_task}/")
        wait_live(watcher)
        expect(watcher.locator("#current-version")).to_contain_text("v1")
        expect(watcher.locator("#task-code summary")).to_have_text("Code of the current version (v1)")
        watcher_event = other.new_page()
        watcher_event.goto(f"{anchor_live.url}/events/{event_id}/")
        wait_live(watcher_event)
        expect(watcher_event.locator("#event-status")).to_have_text("Pending review")

        login(page, REVIEWER, next_url=f"/events/{event_id}/")
        wait_live(page)
        side = page.locator("table.diff-side")
        expect(side).to_be_visible()
        expect(side.locator("td.diff-del")).to_contain_text('"#submit"')
        expect(side.locator("td.diff-add")).to_contain_text('"button[data-test=send]"')
        page.get_by_role("button", name="Inline").click()
        inline = page.locator("table.diff-inline")
        expect(inline).to_be_visible()
        expect(side).to_be_hidden()
        expect(inline.locator("tr.diff-del")).to_contain_text("#submit")
        expect(inline.locator("tr.diff-add")).to_contain_text("button[data-test=send]")

        page.get_by_role("button", name=re.compile(r"Approve and deploy v2")).click()
        expect(page.locator(".message-success")).to_contain_text("Version 2 is now the task's current version")
        expect(page.locator("#event-status")).to_have_text("Deployed")

        # Both of the other person's pages update by themselves.
        expect(watcher.locator("#current-version")).to_contain_text("v2", timeout=10_000)
        expect(watcher.locator("#task-code summary")).to_have_text("Code of the current version (v2)", timeout=10_000)
        expect(watcher.locator("[data-current-code]")).to_contain_text("button[data-test=send]", use_inner_text=False)
        expect(watcher_event.locator("#event-status")).to_have_text("Deployed", timeout=10_000)
        expect(watcher_event.locator("#decision-note")).to_contain_text("Deployed by rita")
    finally:
        other.close()


def test_an_open_heal_page_and_the_queue_see_when_the_tasks_code_moves_on(browser, page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    login(page, REVIEWER, next_url=f"/events/{event_id}/")
    wait_live(page)
    expect(page.get_by_role("button", name=re.compile("Approve and deploy v2"))).to_be_visible()
    queue = page.context.new_page()
    queue.goto(f"{anchor_live.url}/")
    wait_live(queue)
    row = queue.locator(f'tr[data-id="{event_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("[data-superseded]")).to_have_count(0)

    assert anchor_live.enqueue("tests.browser.scenario.task_code_edit", live_task) == 3

    expect(page.locator("#superseded-note")).to_contain_text("it is now v3", timeout=10_000)
    expect(page.get_by_role("button", name=re.compile("Approve and deploy"))).to_have_count(0)
    expect(row.locator("[data-superseded]")).to_have_text("superseded, can only be rejected", timeout=10_000)


def test_the_compare_form_offers_a_heals_new_version_as_soon_as_it_exists(page, anchor_live, login, live_task):
    login(page, MEMBER, next_url=f"/tasks/{live_task}/")
    wait_live(page)
    expect(page.locator("#diff-empty")).to_contain_text("this task has only v1")

    _pending_event(anchor_live, live_task)

    expect(page.locator("#task-diff input[name=b]")).to_have_value("2", timeout=10_000)
    expect(page.locator("#task-diff input[name=a]")).to_have_value("1")
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("table.diff-side td.diff-add")).to_contain_text('"button[data-test=send]"')


def test_a_second_approval_is_told_it_changed_nothing(browser, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    # A stale page (no script: it cannot hear the live update) still shows the buttons after someone else decided.
    stale = browser.new_context(java_script_enabled=False)
    try:
        page = stale.new_page()
        login(page, REVIEWER, next_url=f"/events/{event_id}/")
        assert anchor_live.enqueue("tests.browser.scenario.event_approve_as", event_id, "rita") == "deployed"
        page.get_by_role("button", name=re.compile("Approve and deploy")).click()
        expect(page.locator("#refusal")).to_contain_text("Already deployed by rita")
        expect(page.locator("#refusal")).to_contain_text("nothing changed")
        expect(page.locator("#event-status")).to_have_text("Deployed")
    finally:
        stale.close()


def test_rejecting_requires_a_comment(page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    login(page, REVIEWER, next_url=f"/events/{event_id}/")
    comment = page.get_by_label("Why reject? (required)")

    page.get_by_role("button", name="Reject").click()  # the browser refuses the empty required field
    assert comment.evaluate("el => el.validity.valueMissing") is True
    expect(page.locator("#event-status")).to_have_text("Pending review")

    # Past the browser's check (whitespace only), the server refuses too and says why, next to the field.
    comment.fill("   ")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#reject-comment-error")).to_contain_text("a comment is required to reject")
    expect(page.locator("#event-status")).to_have_text("Pending review")

    page.get_by_label("Why reject? (required)").fill("It picked the wrong button")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#event-status")).to_have_text("Rejected")
    expect(page.locator("#decision-note")).to_contain_text("Rejected by rita")


def test_a_non_reviewer_sees_no_buttons_and_a_forged_post_is_refused(page, anchor_live, login, live_task):
    event_id = _pending_event(anchor_live, live_task)
    login(page, MEMBER, next_url=f"/events/{event_id}/")
    expect(page.locator("#event-status")).to_have_text("Pending review")
    expect(page.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    expect(page.locator("#decision-note")).to_contain_text("Waiting for a reviewer")

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{anchor_live.url}/events/{event_id}/approve/", form={"csrfmiddlewaretoken": csrf}, max_redirects=0
    )
    assert response.status == 403
    page.reload()
    expect(page.locator("#event-status")).to_have_text("Pending review")


def test_filters_and_pagination(page, anchor_live, login, live_task):
    anchor_live.enqueue(
        "tests.browser.scenario.events_bulk_make", live_task, 55, status="rejected", error_type="captcha_detected"
    )
    login(page, REVIEWER)
    page.get_by_label("Error type").select_option("captcha_detected")
    page.get_by_label("Task", exact=True).fill(live_task)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody#queue-rows tr[data-id]")
    expect(rows).to_have_count(50)
    for text in rows.all_inner_texts()[:5]:
        assert "captcha_detected" in text
    first_page = rows.first.get_attribute("data-id")

    page.get_by_role("link", name="Older ›").click()
    expect(rows).to_have_count(5)
    assert "error_type=captcha_detected" in page.url
    page.get_by_role("link", name="‹ Newer").click()
    expect(rows).to_have_count(50)
    assert rows.first.get_attribute("data-id") == first_page

    page.get_by_label("Search").fill("bulk 54")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("captcha_detected")


def test_a_running_tasks_steps_appear_as_they_happen(page, anchor_live, login, live_task):
    login(page, REVIEWER, next_url=f"/tasks/{live_task}/")
    wait_live(page)
    anchor_live.enqueue_nowait("tests.browser.scenario.run_steps_play", live_task, delay_s=0.4)
    steps = page.locator("#task-runs [data-live-steps] li.step")
    expect(steps.first).to_be_visible(timeout=10_000)
    # The first step shows while the run is still running (it takes five steps of 0.4 s).
    expect(page.locator("#task-runs .badge-run-running").first).to_be_visible()
    expect(steps).to_have_count(5, timeout=10_000)
    expect(page.locator("#task-runs .badge-run-succeeded").first).to_be_visible(timeout=10_000)


def test_a_runs_own_page_shows_its_steps_as_they_happen_and_how_it_ended(page, anchor_live, login, live_task):
    run_id = anchor_live.enqueue("tests.browser.scenario.run_queued_make", live_task)
    login(page, MEMBER, next_url=f"/runs/{run_id}/")
    wait_live(page)
    expect(page.locator("#run-body .badge-run-queued")).to_be_visible()
    anchor_live.enqueue_nowait("tests.browser.scenario.run_steps_play", live_task, delay_s=0.4, run_id=run_id)
    steps = page.locator(f'[data-live-steps="{run_id}"] li.step')
    expect(steps.first).to_be_visible(timeout=10_000)
    expect(page.locator("#run-body .badge-run-running")).to_be_visible()
    expect(steps).to_have_count(5, timeout=10_000)
    expect(page.locator("#run-body .badge-run-succeeded")).to_be_visible(timeout=10_000)
    expect(page.locator(f'[data-run-output="{run_id}"]')).to_contain_text("Thanks, Ada!")


def test_a_run_page_opened_mid_run_shows_the_steps_done_so_far_and_counts_the_rest(page, anchor_live, login, live_task):
    run_id = anchor_live.enqueue("tests.browser.scenario.run_queued_make", live_task)
    anchor_live.enqueue_nowait("tests.browser.scenario.run_steps_play", live_task, delay_s=1.5, run_id=run_id)
    stored = "from tasks_app.models import Run; import json; print(json.dumps(len(Run.objects.get(pk=%r).trace)))"
    deadline = time.monotonic() + 20
    while anchor_live.shell_json(stored % run_id) < 2:  # two steps were taken and broadcast before the page opens
        assert time.monotonic() < deadline, "the run took no two steps"

    login(page, MEMBER, next_url=f"/runs/{run_id}/")

    steps = page.locator(f'[data-live-steps="{run_id}"] li.step')
    expect(steps.nth(1)).to_be_visible()  # rendered with the page, before any live message
    expect(steps).to_have_count(5, timeout=10_000)
    expect(page.locator(f'[data-step-count="{run_id}"]')).to_have_text("5")
    expect(page.locator("#run-body .badge-run-succeeded")).to_be_visible(timeout=10_000)


def test_a_running_runs_steps_stay_when_the_runs_card_is_fetched_again(page, anchor_live, login, live_task):
    """Another run queued meanwhile re-fetches the card: the steps already shown stay, none twice."""
    login(page, REVIEWER, next_url=f"/tasks/{live_task}/")
    wait_live(page)
    anchor_live.enqueue_nowait("tests.browser.scenario.run_steps_play", live_task, delay_s=0.4, another_run_after=2,
                               hold_s=6)
    expect(page.locator("#task-runs .badge-run-queued").first).to_be_visible(timeout=10_000)  # card re-fetched
    expect(page.locator("#task-runs [data-live-steps] li.step")).to_have_count(5, timeout=4_000)
    expect(page.locator("#task-runs .badge-run-running").first).to_be_visible()


def test_an_older_heal_that_comes_up_for_review_appears_in_the_filtered_queue(page, anchor_live, login, live_task):
    older = anchor_live.enqueue("tests.browser.scenario.event_pending_make", live_task, final="validating")
    newer = _pending_event(anchor_live, live_task)
    login(page, REVIEWER)
    page.goto(f"{anchor_live.url}/?status=pending_review&task={live_task}")
    wait_live(page)
    expect(page.locator(f'tr[data-id="{newer}"]')).to_be_visible()
    expect(page.locator(f'tr[data-id="{older}"]')).to_have_count(0)

    anchor_live.enqueue("tests.browser.scenario.event_validation_passes", older)
    expect(page.locator(f'tr[data-id="{older}"]')).to_be_visible(timeout=10_000)
    ids = [row.get_attribute("data-id") for row in page.locator("tbody#queue-rows tr[data-id]").all()]
    assert ids == [newer, older]


def test_a_member_writes_a_new_task_in_the_browser_and_edits_it(page, anchor_live, login):
    login(page, MEMBER, next_url="/tasks/")
    page.get_by_role("link", name="New task").click()
    page.get_by_label("Name").fill("Browser-made task")
    page.get_by_label("Prompt").fill("Open the demo site's contact page")
    page.get_by_label("Code").fill("def run(page, params):\n    page.goto(params['base_url'])\n    return {'title': page.title(\n")
    page.get_by_label("Params").fill('{"base_url": "http://127.0.0.1/demo-site/"}')
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#id_code_error")).to_contain_text("line 3")  # the unclosed call, next to the code

    page.get_by_label("Code").fill("def run(page, params):\n    page.goto(params['base_url'])\n    return {'title': page.title()}\n")
    page.get_by_role("button", name="Create task").click()
    expect(page.get_by_role("heading", name="Browser-made task")).to_be_visible()
    expect(page.locator("#current-version")).to_contain_text("v1")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Code")).to_have_value(re.compile(r"page\.title\(\)"))
    page.get_by_label("Name").fill("Browser-made task, renamed")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Browser-made task, renamed")).to_be_visible()


def test_the_delivery_log_shows_a_slow_receivers_answer_when_it_comes(page, anchor_live, login):
    answer = threading.Event()

    class SlowReceiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            answer.wait(20)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        login(page, MEMBER, next_url="/webhooks/new/")
        page.get_by_label("URL").fill(f"http://127.0.0.1:{receiver.server_port}/hook")
        page.get_by_role("button", name=re.compile("Create")).click()
        page.get_by_role("link", name="Done").click()
        wait_live(page)
        page.get_by_role("button", name="Send test event").click()
        wait_live(page)
        status = page.locator("#endpoint-live tbody tr").first.locator(".badge")
        expect(status).to_have_text("Sending", timeout=10_000)  # the worker is waiting for the receiver

        answer.set()
        expect(status).to_have_text("Succeeded", timeout=10_000)
        expect(page.locator("#endpoint-live tbody tr").first).to_contain_text("HTTP 204")
    finally:
        answer.set()
        receiver.shutdown()
