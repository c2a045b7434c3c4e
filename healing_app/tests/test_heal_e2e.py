"""End to end: a task that works on version 1 of a page breaks on version 2 and heals during the run.

Real Chromium, pages served on localhost, real RQ queues on Redis and the product's own worker class.
"""

from __future__ import annotations

import re

import pytest

from healing_app import pipeline
from healing_app.models import HealingEvent
from healing_app.services import healing_approve, healing_reject
from healing_app.tests.pages import (
    NAME_FIELD,
    NEXT_BUTTON,
    PRICE_15_CODE,
    catalog,
    more_products,
    two_steps,
)
from tasks_app import services
from tasks_app.models import Run
from tasks_app.tests.sites import Response, redirect, serve

pytestmark = pytest.mark.django_db(transaction=True)
S = HealingEvent.Status

CONTACT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    # Send the form.
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''


NEWSLETTER_FORM = (
    '<form method="post" action="/newsletter"><label for="nl">Newsletter</label><input id="nl" name="nl">'
    '<button id="newsletter-send" type="submit" class="btn primary">Send</button></form>'
)
V1_BUTTON = '<button id="submit" type="submit" class="btn primary">Send</button>'


def contact_page(version: int) -> str:
    if version == 1:
        button = V1_BUTTON
    elif version == 2:
        button = '<button id="send-message" type="submit" class="btn primary cta" data-testid="send">Send message</button>'
    else:  # the real button is gone; a look-alike sits in another form
        button = ""
    return (
        '<html><body><h1>Contact</h1>'
        '<form method="post" action="/thanks"><label for="name">Name</label><input id="name" name="name">'
        f'<button type="reset" class="btn">Clear</button>{button}</form>{NEWSLETTER_FORM if version == 3 else ""}</body></html>'
    )


def thanks(request) -> str:
    return f'<p class="confirmation">Thanks, {request.form.get("name")}!</p>'


def contact_site(version: int):
    return serve({
        "/contact": lambda request: contact_page(site_version["v"]),
        "/thanks": thanks,
        "/newsletter": '<p class="subscribed">Subscribed</p>',
    })


site_version = {"v": 1}


def make_task(site, code=CONTACT_CODE, **config):
    return services.task_create(
        name="contact",
        prompt="Fill out the contact form",
        code=code,
        params={"base_url": site.url, "name": "Ada"},
        self_healing=True,
        self_healing_config=config,
    )


def run_now(task, drain) -> Run:
    run = services.run_enqueue(task=task)
    drain()
    run.refresh_from_db()
    return run


def heal_after_contact_page_changes(drain, new_page: str) -> tuple[Run, HealingEvent]:
    """Run the contact task (auto-deploying heals) on version 1 of the page, then on `new_page`: that run and its
    heal."""
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/contact"] = new_page
        run = run_now(task, drain)
    return run, HealingEvent.objects.get(task=task)


def reject_and_run_again(task, drain, reviewer, comment: str) -> tuple[HealingEvent, Run, HealingEvent]:
    """Reject the task's heal waiting for review and run the task again: the rejected heal, the new run, its heal."""
    rejected = HealingEvent.objects.get(task=task)
    assert rejected.status == S.PENDING_REVIEW, rejected.reason
    healing_reject(event=rejected, reviewer=reviewer, comment=comment)
    again = run_now(task, drain)
    return rejected, again, HealingEvent.objects.filter(task=task).exclude(pk=rejected.pk).get()


def _explain(run: Run) -> str:
    event = HealingEvent.objects.filter(run=run).first()
    return f"{run.error_type}: {run.error_message}; event: {event and (event.status, event.reason, event.agent_trace)}"


@pytest.fixture(autouse=True)
def reset_site():
    site_version["v"] = 1
    yield


def test_renamed_button_heals_during_the_run_and_auto_deploys(drain):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site_version["v"] = 2
        healed = run_now(task, drain)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert healed.output == {"confirmation": "Thanks, Ada!"}
    # One POST for the v1 run, one for the healed run (not restarted), one for the validation run.
    assert site.hits["POST /thanks"] == 3
    event = HealingEvent.objects.get(run=healed)
    assert event.status == S.DEPLOYED
    assert event.error_type == "element_not_found"
    assert event.validation_run.status == Run.Status.SUCCEEDED
    task.refresh_from_db()
    assert task.current_version == event.new_version
    old_lines, new_lines = event.original_version.code.splitlines(), event.new_version.code.splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(old_lines) == len(new_lines) and len(changed) == 1
    assert changed[0][0].strip() == 'page.click("#submit")'
    assert "send" in changed[0][1] and "#submit" not in changed[0][1]
    assert "# Send the form." in event.new_version.code  # comments survive the patch
    assert "#submit" in event.root_cause and "line 5" in event.root_cause
    assert [entry["status"] for entry in event.timeline] == ["triggered", "healing", "validating", "deployed"]


def test_without_auto_deploy_the_heal_waits_for_a_reviewer_then_deploys_on_approval(drain, reviewer):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=False)
        run_now(task, drain)
        site_version["v"] = 2
        run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert event.status == S.PENDING_REVIEW
    task.refresh_from_db()
    assert task.current_version == event.original_version
    healing_approve(event=event, reviewer=reviewer)
    task.refresh_from_db()
    assert task.current_version == event.new_version


def test_a_second_failure_healed_the_same_way_joins_the_heal_waiting_for_review(drain, reviewer):
    """Until someone approves, a task that keeps breaking on the same step gets one review, not one a run."""
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=False)
        run_now(task, drain)
        site_version["v"] = 2
        run_now(task, drain)
        again = run_now(task, drain)
    first, second = HealingEvent.objects.filter(task=task).order_by("created_at")
    assert again.status == Run.Status.HEALED  # the run itself still completes
    assert first.status == S.PENDING_REVIEW
    assert second.status == S.FAILED and second.new_version_id is None
    assert second.reason == f"the same fix is already pending review in {first.pk}; no second version"
    assert task.versions.count() == 2
    healing_approve(event=first, reviewer=reviewer)
    task.refresh_from_db()
    assert task.current_version == first.new_version


def test_rejected_heal_leaves_the_code_unchanged_and_the_element_stays_rejected(drain, reviewer):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=False, max_attempts=5)
        run_now(task, drain)
        site_version["v"] = 2
        run_now(task, drain)
        event = HealingEvent.objects.get(task=task)
        healing_reject(event=event, reviewer=reviewer, comment="that is the wrong button")
        task.refresh_from_db()
        assert task.current_version == event.original_version
        # The next run must not pick the rejected element again.
        again = run_now(task, drain)
    second = HealingEvent.objects.filter(task=task).exclude(pk=event.pk).get()
    assert second.chosen_element is None or second.chosen_element.get("id") != "send-message"
    assert again.status == Run.Status.FAILED and second.status == S.FAILED and second.new_version_id is None
    # The reviewer is told that their rejection is what stops this heal, not only that the evidence is weak.
    assert "locator abstained" in second.reason
    assert "the button \u201cSend message\u201d was left out: a reviewer rejected it for this step before" in second.reason


def test_a_decoy_look_alike_is_never_deployed(drain):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        first_version = task.current_version
        site_version["v"] = 3
        run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert event.status == S.FAILED
    # Its form is still on the page, so a button of another form is not its button: the newsletter never hears of it.
    assert site.hits["POST /newsletter"] == 0
    assert "locator abstained" in event.reason, event.reason
    task.refresh_from_db()
    assert task.current_version == first_version


def newsletter_form_added_above(drain, contact_button: str):
    """Run the contact task (auto-deploying heals) on version 1, then with a newsletter form added above the contact
    form (which is now the page's second <form>) and its button replaced by `contact_button`: the run, its heal, and
    the requests the site had."""
    h1 = "<h1>Contact</h1>"
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/contact"] = contact_page(1).replace(h1, h1 + NEWSLETTER_FORM).replace(V1_BUTTON, contact_button)
        run = run_now(task, drain)
    return run, HealingEvent.objects.get(task=task), site.hits


def test_a_form_added_above_the_steps_form_does_not_take_its_place(drain):
    """The step's form is told by where it posts, not by its place: the contact form's button, with a new id, is
    pressed, not the newsletter's "Send" where it was."""
    run, event, hits = newsletter_form_added_above(drain, V1_BUTTON.replace('id="submit"', 'id="send-it"'))
    assert run.status == Run.Status.HEALED, _explain(run)
    assert hits["POST /newsletter"] == 0
    assert hits["POST /thanks"] == 3  # the first run, the healed run and the validation run
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    assert "#send-it" in event.new_version.code, event.new_version.code


def test_a_look_alike_in_a_form_added_above_is_not_pressed_when_the_button_is_gone(drain):
    """The contact form lost its button: the newsletter's "Send" is where it was and reads the same, but posts
    elsewhere."""
    run, event, hits = newsletter_form_added_above(drain, "")
    assert hits["POST /newsletter"] == 0
    assert run.status == Run.Status.FAILED and event.status == S.FAILED
    assert "locator abstained" in event.reason and "of other forms left out" in event.reason, event.reason


def test_failure_types_not_in_trigger_on_are_not_healed(drain):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        site_version["v"] = 2
        run = run_now(task, drain)
    assert run.status == Run.Status.FAILED
    assert run.error_type == "element_not_found"
    assert not HealingEvent.objects.exists()


def test_max_attempts_stops_new_heal_loops_for_the_same_step(drain):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, max_attempts=1)
        run_now(task, drain)
        site_version["v"] = 3  # only a decoy: every heal of this step fails
        run_now(task, drain)
        run_now(task, drain)
    first, second = HealingEvent.objects.order_by("created_at")
    assert first.attempt == 1 and first.agent_trace
    assert second.status == S.FAILED
    assert "max_attempts (1)" in second.reason
    assert second.agent_trace == []


CATALOG_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/catalog")
    return {"products": page.inner_text(".products")}
'''


def test_moved_page_is_found_from_the_sites_own_links(drain):
    pages = {
        "/": '<a href="/catalog">Catalog</a> <a href="/contact">Contact</a>',
        "/catalog": '<ul class="products"><li>Mug 12.00</li></ul>',
    }
    with serve(pages) as site:
        task = make_task(site, code=CATALOG_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages = {
            "/": '<a href="/products">Our products</a> <a href="/contact">Contact</a> <a href="/about">About us</a>',
            "/products": '<ul class="products"><li>Mug 12.00</li></ul>',
        }
        run = run_now(task, drain)
    assert run.status == Run.Status.HEALED, _explain(run)
    event = HealingEvent.objects.get(task=task)
    assert event.error_type == "navigation_error"
    assert event.status == S.DEPLOYED
    assert '"/products"' in event.new_version.code and "/catalog" not in event.new_version.code


def test_a_page_a_reviewer_rejected_as_the_moved_page_is_not_proposed_again(drain, reviewer):
    pages = {
        "/": '<a href="/catalog">Catalog</a> <a href="/contact">Contact</a>',
        "/catalog": '<ul class="products"><li>Mug 12.00</li></ul>',
    }
    with serve(pages) as site:
        task = make_task(site, code=CATALOG_CODE, auto_deploy=False, max_attempts=5)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages = {
            "/": '<a href="/products">Our products</a> <a href="/contact">Contact</a>',
            "/products": '<ul class="products"><li>Mug 12.00</li></ul>',
        }
        run_now(task, drain)
        rejected, again, second = reject_and_run_again(task, drain, reviewer, "/products is the shop, not the catalog")
    assert again.status == Run.Status.FAILED
    assert second.status == S.FAILED
    assert second.new_version_id is None
    assert second.reason == (
        "no page linked from the site looks like /catalog (/products, linked from it, was rejected by a reviewer as "
        "its new place)"
    )
    assert task.versions.count() == 2  # v1 and the rejected draft: nothing new to review


INVOICES_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/invoices")
    return {"invoices": page.inner_text("table")}
'''


def test_a_moved_page_is_told_from_a_help_page_of_the_same_name_by_what_it_shows(drain):
    """The help page's link matches the old path best and it has a table too; the table's text, remembered
    from the last successful run, tells the real invoice list (one invoice more than then) from the FAQ."""
    with serve({"/": '<a href="/invoices">Invoices</a>', "/invoices": "<table><tr><td>INV-1</td><td>12.00</td></tr></table>"}) as site:
        task = make_task(site, code=INVOICES_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages = {
            "/": '<nav><a href="/billing">Billing</a> <a href="/help/invoices">Invoice questions</a></nav>',
            "/billing": "<table><tr><td>INV-1</td><td>12.00</td></tr><tr><td>INV-2</td><td>8.00</td></tr></table>",
            "/help/invoices": "<h1>Invoice FAQ</h1><table><tr><td>When are invoices sent?</td><td>Monthly</td></tr></table>",
        }
        run = run_now(task, drain)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"invoices": "INV-1\t12.00\nINV-2\t8.00"}
    event = HealingEvent.objects.get(task=task)
    assert event.status == S.DEPLOYED, event.reason
    assert '"/billing"' in event.new_version.code and "/help/invoices" not in event.new_version.code


GUIDE_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/docs/v1/guide")
    return {"install": page.inner_text("#install")}
'''


def test_a_moved_page_is_the_one_that_reads_as_before_not_the_archived_one_named_closer(drain):
    guide = '<h1>Guide</h1><code id="install">pip install anchor==2.0</code>'
    with serve({"/": '<a href="/docs/v1/guide">Guide</a>', "/docs/v1/guide": guide}) as site:
        task = make_task(site, code=GUIDE_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages = {
            "/": '<a href="/docs/v1/guide-old">Guide (v1, archived)</a> <a href="/docs/v2/guide">Guide</a>',
            "/docs/v1/guide-old": '<h1>Guide (archived)</h1><code id="install">pip install anchor==1.4</code>',
            "/docs/v2/guide": guide,
        }
        run = run_now(task, drain)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"install": "pip install anchor==2.0"}
    assert '"/docs/v2/guide"' in HealingEvent.objects.get(task=task).new_version.code


REPORT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/reports/weekly")
    return {"report": page.inner_text(".report-table")}
'''


def test_a_removed_page_is_not_replaced_by_another_page_of_the_same_template(drain):
    table = ('<table class="report-table"><tr><th>{0}</th><th>Orders</th><th>Revenue</th></tr>'
             "<tr><td>{1}</td><td>{2}</td><td>{3}</td></tr></table>")
    with serve({"/": '<a href="/reports/weekly">Weekly report</a>',
                "/reports/weekly": table.format("Week", "2024-W12", "340", "4,210.00")}) as site:
        task = make_task(site, code=REPORT_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages = {
            "/": '<a href="/reports">Reports</a> <a href="/reports/monthly">Monthly report</a>',
            "/reports": "<h1>Reports</h1>",
            "/reports/monthly": table.format("Month", "2024-03", "1,420", "17,880.00"),
        }
        run = run_now(task, drain)
    assert run.status == Run.Status.FAILED, _explain(run)
    event = HealingEvent.objects.get(task=task)
    assert event.status == S.FAILED and event.new_version is None


PRICE_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/item")
    return {"price": page.inner_text("#price")}
'''


def test_a_read_step_is_not_located_by_the_value_it_read_last_time(drain):
    """The old price, struck out beside the new one, still shows yesterday's value: it must not be read."""
    with serve({"/item": '<div class="product"><h1>Mug</h1><span id="price" class="price">12.00</span></div>'}) as site:
        task = make_task(site, code=PRICE_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/item"] = (
            '<div class="product"><h1>Mug</h1><span class="price price--was" style="text-decoration:line-through">'
            '12.00</span> <span class="price price--now">9.60</span> <span class="badge">-20%</span></div>'
        )
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.output != {"price": "12.00"}, _explain(run)
    assert event.status != S.DEPLOYED or "price--was" not in event.new_version.code


SLOW_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/report")
    return {"total": page.inner_text("#total")}
'''


FAST_REPORT = '<div id="total">42</div>'
SLOW_REPORT = '<div id="out"></div><script src="/late.js"></script>'  # the total shows 6.5 s late


def late_total_js() -> Response:
    return Response(
        "setTimeout(() => { document.getElementById('out').innerHTML = '<div id=\"total\">42</div>'; }, 6500);",
        content_type="application/javascript",
    )


def test_a_slower_page_gets_a_longer_timeout(drain):
    with serve({"/report": FAST_REPORT, "/late.js": late_total_js()}) as site:
        task = make_task(site, code=SLOW_CODE, auto_deploy=True, trigger_on=["timeout", "element_not_found"])
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/report"] = SLOW_REPORT
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, (run.error_type, run.error_message, event.reason)
    assert event.error_type in ("timeout", "element_not_found")
    assert event.status == S.DEPLOYED, event.reason
    assert "timeout=" in event.new_version.code


def test_a_rejected_fix_is_not_put_up_for_review_again(drain, reviewer):
    # Nothing to exclude while the run is taken over (no element, no page was chosen): the same wait heals
    # the run again, but the version it would write is the one a reviewer turned down.
    with serve({"/report": FAST_REPORT, "/late.js": late_total_js()}) as site:
        task = make_task(site, code=SLOW_CODE, auto_deploy=False, max_attempts=5, trigger_on=["timeout", "element_not_found"])
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/report"] = SLOW_REPORT
        run_now(task, drain)
        rejected, again, second = reject_and_run_again(task, drain, reviewer, "fix the page, not the timeout")
    assert again.status == Run.Status.HEALED
    assert second.status == S.FAILED
    assert second.reason == f"a reviewer rejected the same fix in {rejected.pk}; no second version"
    assert second.new_version_id is None
    assert task.versions.count() == 2


def test_a_link_shown_late_next_to_another_is_waited_for_not_taken_for_a_menu(drain):
    """Hidden beside a visible link, it looks like a hover menu's item; but a slow page comes first: the agent
    waits for it (it shows after 6.5 s; the step's timeout is 5 s), and hovers nothing."""
    late = (
        '<nav><a href="/">Home</a><span><a id="go" href="/next" style="display:none">Go</a></span></nav>'
        "<script>setTimeout(() => { document.getElementById('go').style.display = 'inline'; }, 6500);</script>"
    )
    code = '''def run(page, params):
    page.goto(params["base_url"] + "/")
    page.click("#go")
    return {"page": page.inner_text("h1")}
'''
    with serve({"/": '<nav><a href="/">Home</a><span><a id="go" href="/next">Go</a></span></nav>',
                "/next": "<h1>Next</h1>"}) as site:
        task = make_task(site, code=code, auto_deploy=True, trigger_on=["timeout"])
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/"] = late
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert not any(step["action"] == "open_menu" for step in event.agent_trace[0]["steps"])
    assert event.status == S.DEPLOYED, event.reason
    assert "timeout=" in event.new_version.code and "hover" not in event.new_version.code


ACCOUNT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/account")
    return {"balance": page.inner_text("#balance")}
'''


def run_into_a_login_wall(site, drain, account) -> tuple[Run, HealingEvent]:
    """Run the account task on the open account page, then again once `account` guards it."""
    task = make_task(site, code=ACCOUNT_CODE, auto_deploy=True, trigger_on=["authentication_failure"])
    services.task_update(task=task, secrets={"username": "ada@example.com", "password": "correct-horse"})
    assert run_now(task, drain).status == Run.Status.SUCCEEDED
    site.pages["/account"] = account
    run = run_now(task, drain)
    return run, HealingEvent.objects.get(task=task)


def test_a_new_login_wall_is_passed_with_the_tasks_secrets(drain):
    def account(request):
        if "session=ok" in request.headers.get("Cookie", ""):
            return '<h1>Account</h1><p id="balance">100.00</p>'
        return redirect("/login")

    def login(request):
        if request.method == "POST" and request.form.get("user") == "ada@example.com" and request.form.get("pass") == "correct-horse":
            return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ok; Path=/"})
        return (
            '<form method="post" action="/login"><label for="u">Email</label><input id="u" name="user" type="email">'
            '<label for="p">Password</label><input id="p" name="pass" type="password">'
            '<button type="submit">Sign in</button></form>'
        )

    with serve({"/account": '<h1>Account</h1><p id="balance">100.00</p>', "/login": login}) as site:
        run, event = run_into_a_login_wall(site, drain, account)
    assert event.error_type == "authentication_failure"
    assert run.status == Run.Status.HEALED, event.reason
    assert event.status == S.DEPLOYED, event.reason
    code = event.new_version.code
    assert 'params["secrets"]["password"]' in code and "correct-horse" not in code
    assert "correct-horse" not in str(event.agent_trace)


def test_secrets_are_typed_only_on_the_tasks_sites_and_a_single_sign_on_host_is_allowed_by_naming_it(drain):
    """A redirect to a login form on another host (a hijacked link, an open redirect) gets no credentials; once
    the task's params name that host, as for a real single sign-on page, the wall is passed there."""
    posted = []

    def account(request):
        if "session=ok" in request.headers.get("Cookie", ""):
            return '<h1>Account</h1><p id="balance">100.00</p>'
        return redirect(elsewhere + "/login")

    def login(request):
        if request.method == "POST":
            posted.append(dict(request.form))
            return redirect(site.url + "/callback")  # back to the site, which starts the session
        return (
            '<form method="post" action="/login"><label for="u">Email</label><input id="u" name="user" type="email">'
            '<label for="p">Password</label><input id="p" name="pass" type="password">'
            '<button type="submit">Sign in</button></form>'
        )

    callback = Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ok; Path=/"})
    with serve({"/account": '<h1>Account</h1><p id="balance">100.00</p>', "/login": login, "/callback": callback}) as site:
        elsewhere = site.url.replace("127.0.0.1", "localhost")  # the same server under another host name
        run, event = run_into_a_login_wall(site, drain, account)
        assert run.status == Run.Status.FAILED and event.status == S.FAILED
        assert "secrets are typed only on the task's sites (127.0.0.1); this form is on localhost" in event.reason
        assert posted == []

        task = event.task
        services.task_update(task=task, params={**task.params, "sso_url": elsewhere + "/login"})
        task.refresh_from_db()
        healed = run_now(task, drain)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert posted == [{"user": "ada@example.com", "pass": "correct-horse"}] * 2  # the healed run, its validation


def test_a_login_wall_with_a_sign_up_form_first_is_passed_by_signing_in_not_up(drain):
    def account(request):
        cookie = request.headers.get("Cookie", "")
        if "session=ada" in cookie or "session=new" in cookie:
            return f'<h1>Account</h1><p id="balance">{"100.00" if "session=ada" in cookie else "0.00"}</p>'
        return redirect("/auth?next=/account")

    def register(request):
        return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=new; Path=/"})

    def session(request):
        if request.form.get("email") == "ada@example.com" and request.form.get("password") == "correct-horse":
            return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ada; Path=/"})
        return redirect("/auth")

    auth = (
        '<h2>New here? Create an account</h2><form method="post" action="/register">'
        '<label for="r-email">Email</label><input id="r-email" name="email" type="email">'
        '<label for="r-pass">Choose a password</label><input id="r-pass" name="password" type="password">'
        '<button type="submit">Create account</button></form>'
        '<h2>Already a customer?</h2><form method="post" action="/session">'
        '<label for="s-email">Email</label><input id="s-email" name="email" type="email">'
        '<label for="s-pass">Password</label><input id="s-pass" name="password" type="password">'
        '<button type="submit">Sign in</button></form>'
    )
    with serve({"/account": '<h1>Account</h1><p id="balance">100.00</p>', "/auth": auth,
                "/register": register, "/session": session}) as site:
        run, event = run_into_a_login_wall(site, drain, account)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"balance": "100.00"}
    assert site.hits["POST /register"] == 0
    assert event.status == S.DEPLOYED, event.reason
    assert "#s-email" in event.new_version.code and "#r-email" not in event.new_version.code


def test_a_two_step_login_wall_user_name_then_password_is_passed(drain):
    def account(request):
        if "session=ada" in request.headers.get("Cookie", ""):
            return '<h1>Account</h1><p id="balance">100.00</p>'
        return redirect("/signin?next=/account")

    def signin(request):  # step 1: who are you?
        return (
            '<form method="post" action="/signin/password"><label for="id">Email or username</label>'
            '<input id="id" name="identifier" autocomplete="username"><button type="submit">Next</button></form>'
            '<form action="/search"><input name="q" placeholder="Search help"><button>Search</button></form>'
        )

    def password(request):  # step 2: prove it
        if request.method == "POST" and "password" in request.form:
            if request.form.get("identifier") == "ada@example.com" and request.form["password"] == "correct-horse":
                return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ada; Path=/"})
            return redirect("/signin")
        return (
            '<form method="post" action="/signin/password">'
            f'<input type="hidden" name="identifier" value="{request.form.get("identifier", "")}">'
            '<label for="pw">Password</label><input id="pw" name="password" type="password">'
            '<button type="submit">Sign in</button></form>'
        )

    with serve({"/account": '<h1>Account</h1><p id="balance">100.00</p>', "/signin": signin,
                "/signin/password": password}) as site:
        run, event = run_into_a_login_wall(site, drain, account)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"balance": "100.00"}
    assert event.status == S.DEPLOYED, event.reason
    assert not site.hits["/search"]
    new_lines = event.new_version.code.splitlines()
    assert [line.strip() for line in new_lines[1:7]] == [
        'page.goto(params["base_url"] + "/signin")',
        'page.fill(\'role=textbox[name="Email or username"s]\', params["secrets"]["username"])',
        'page.click(\'role=button[name="Next"s]\')',
        'page.fill("#pw", params["secrets"]["password"])',
        'page.click(\'role=button[name="Sign in"s]\')',
        "page.wait_for_load_state()",
    ]
    assert "in two steps" in event.root_cause
    assert "correct-horse" not in event.new_version.code + str(event.agent_trace)


BUY_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/item")
    page.click("#buy")
    return {"cart": page.inner_text(".cart-count")}
'''


def test_a_button_moved_into_a_web_components_shadow_root_is_found_there(drain):
    v2 = (
        "<h1>Mug</h1><shop-buy></shop-buy><script>customElements.define('shop-buy', class extends HTMLElement {"
        " connectedCallback() { const root = this.attachShadow({mode: 'open'});"
        " root.innerHTML = '<span>12.00</span> <button class=\"buy\">Buy</button>';"
        " root.querySelector('button').onclick = () => { location.href = '/cart'; }; } });</script>"
    )
    with serve({"/item": '<h1>Mug</h1><span>12.00</span> <a id="buy" href="/cart">Buy</a>',
                "/cart": '<p class="cart-count">1 item</p>'}) as site:
        task = make_task(site, code=BUY_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/item"] = v2
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert event.status == S.DEPLOYED, event.reason
    assert event.chosen_element["xpath"] == "/html[1]/body[1]/shop-buy[1]/button[1]"
    assert 'page.click(\'role=button[name="Buy"s]\')' in event.new_version.code


PRICING_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/")
    page.click("#nav-pricing")
    return {"heading": page.inner_text("h1")}
'''

NAV_V1 = '<nav><a id="nav-pricing" href="/pricing">Pricing</a> <a href="/about">About</a></nav><h1>Home</h1>'


def nav_site():
    return serve({"/": NAV_V1, "/pricing": "<h1>Plans and pricing</h1>", "/about": "<h1>About us</h1>",
                  "/products": "<h1>Products</h1>"})


def test_a_link_moved_into_a_hover_drop_down_is_clicked_there_after_a_hover(drain):
    hover_menu = (
        "<style>.dropdown ul{display:none} .dropdown:hover ul{display:block}</style>"
        '<nav><ul><li class="dropdown"><a href="/products">Products</a><ul>'
        '<li><a id="menu-pricing" href="/pricing">Pricing</a></li><li><a href="/features">Features</a></li></ul></li>'
        '<li><a href="/about">About</a></li></ul></nav><h1>Home</h1>'
    )
    with nav_site() as site:
        task = make_task(site, code=PRICING_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/"] = hover_menu
        run = run_now(task, drain)
        task.refresh_from_db()
        rerun = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"heading": "Plans and pricing"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.validation_run.status == Run.Status.SUCCEEDED
    lines = event.new_version.code.splitlines()
    assert lines[2] == "    page.hover('role=link[name=\"Products\"s]')"
    assert lines[3] == "    page.click('role=link[name=\"Pricing\"s]')"
    assert "“Products” menu" in event.root_cause and "hovers over" in event.root_cause
    assert rerun.status == Run.Status.SUCCEEDED and rerun.output == {"heading": "Plans and pricing"}


def test_a_link_now_hidden_in_a_menu_behind_a_button_is_reached_by_opening_the_menu(drain):
    disclosure = (
        '<nav><button aria-expanded="false" aria-controls="more" onclick="document.getElementById(\'more\').hidden'
        ' = !document.getElementById(\'more\').hidden">More</button><ul id="more" hidden>'
        '<li><a id="nav-pricing" href="/pricing">Pricing</a></li><li><a href="/about">About</a></li></ul></nav>'
        "<h1>Home</h1>"
    )
    with nav_site() as site:
        task = make_task(site, code=PRICING_CODE, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/"] = disclosure
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert event.error_type == "timeout"  # the link is there, only hidden
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[2:4] == [
        "    page.click('role=button[name=\"More\"s]')", '    page.click("#nav-pricing")',
    ]
    assert "clicks" in event.root_cause


def contact_in_two_steps(next_button: str) -> str:
    """The contact form as a wizard: the name first, then `next_button` shows the step with the Send button."""
    return ('<html><body><h1>Contact</h1><form method="post" action="/thanks">'
            f"{two_steps(NAME_FIELD, V1_BUTTON, next_button)}</form></body></html>")


def test_a_form_split_into_steps_gets_its_next_button_clicked_before_the_step(drain):
    run, event = heal_after_contact_page_changes(
        drain, contact_in_two_steps(NEXT_BUTTON))
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[3:6] == [  # the comment stays with the statement it is about
        "    page.click('role=button[name=\"Next\"s]')", "    # Send the form.", '    page.click("#submit")',
    ], event.new_version.code
    assert "form step" in event.root_cause


def test_a_next_button_that_submits_the_form_is_not_clicked_to_show_a_step(drain):
    """A "Next" that is a submit button posts the form (a server-side wizard): not something to press on a guess."""
    run, event = heal_after_contact_page_changes(
        drain, contact_in_two_steps('<button type="submit" formaction="/step-2" class="btn">Next</button>'))
    assert run.status == Run.Status.FAILED and event.status == S.FAILED
    assert not any(step.get("action") == "open_menu" and step.get("how") == "click"
                   for attempt in event.agent_trace for step in attempt["steps"]), event.agent_trace


def test_an_element_now_further_down_a_list_that_loads_more_on_demand_is_reached_by_pressing_load_more(drain):
    with serve({"/catalog": catalog(range(1, 16))}) as site:
        task = make_task(site, code=PRICE_15_CODE, auto_deploy=True)
        assert run_now(task, drain).output == {"price": "15.00"}
        site.pages = {"/catalog": catalog(range(1, 7), load_more=True), "/more": more_products}
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"price": "15.00"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.validation_run.output == {"price": "15.00"}
    assert event.new_version.code.splitlines()[2:4] == [
        "    more_button = page.locator('role=button[name=\"Load more\"s]').first  # the list shows more only when asked",
        '    page.locator("#p15 .price").or_(more_button).first.wait_for()',
    ], event.new_version.code
    assert "took 2" in event.root_cause, event.root_cause
    assert site.hits["/more"] == 4  # two presses in the healed run, two in the validation run


def test_a_load_more_button_that_leads_to_another_page_ends_the_takeover(drain):
    """Pagination dressed as a "Load more" button: the run is on another page now, and no code is written for it."""
    with serve({"/catalog": catalog(range(1, 16))}) as site:
        task = make_task(site, code=PRICE_15_CODE, auto_deploy=True)
        assert run_now(task, drain).output == {"price": "15.00"}
        site.pages = {"/catalog": catalog(range(1, 7)) + "<button onclick=\"location = '/catalog/2'\">Load more</button>",
                      "/catalog/2": catalog(range(7, 13))}
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.FAILED and event.status == S.FAILED
    assert "“Load more” left the page" in event.reason, event.reason
    assert event.new_version is None


def test_machine_written_versions_run_contained_and_a_persons_do_not(drain):
    """A deployed heal's code (or code generated from the prompt) may reach the web only through its page: from
    Python it opens no socket, even along a path the static gate missed. A person's own code is theirs to write."""
    probe = '''import urllib.parse
def run(page, params):
    page.goto(params["base_url"] + "/")
    urllib.parse.sys.modules["socket"].create_connection(("127.0.0.1", params["port"]), timeout=5).close()
    return page.inner_text("h1")
'''
    with serve({"/": "<h1>home</h1>"}) as site:
        task = services.task_create(name="probe", prompt="Read the heading", code=probe,
                                    params={"base_url": site.url, "port": site.port})
        assert run_now(task, drain).output == "home"  # a person's code
        healed = services.version_create(task=task, code=probe, source="healed", parent=task.current_version)
        services.version_deploy(task=task, version=healed, reason="test")
        task.refresh_from_db()
        contained = run_now(task, drain)
    assert contained.status == Run.Status.FAILED
    assert "socket.getaddrinfo is not allowed" in contained.error_message


def consent_banner(buttons: str) -> str:
    """A full-page cookie layer drawn over the contact form, as consent tools add them."""
    return (
        '<div id="consent" style="position:fixed;inset:0;z-index:10;background:rgba(0,0,0,.4)">'
        '<div role="dialog" aria-label="Cookies"><p>We use cookies to make this site work.</p>'
        f'{buttons}</div></div>'
    )


def under_layers(layers: str, version: int = 1) -> str:
    """The contact page with `layers` (banners, pop-ups) drawn over it."""
    return contact_page(version).replace("</body>", layers + "</body>")


CLOSES_CONSENT = "onclick=\"document.getElementById('consent').remove()\""


def test_a_cookie_banner_over_the_form_is_closed_whenever_it_shows(drain):
    banner = consent_banner(
        '<a href="/privacy">Privacy policy</a>'
        f'<button {CLOSES_CONSENT}>Accept all</button> <button {CLOSES_CONSENT}>Reject all</button>'
    )
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        site.pages["/contact"] = under_layers(banner)
        healed = run_now(task, drain)
        task.refresh_from_db()
        assert run_now(task, drain).status == Run.Status.SUCCEEDED  # the new version, banner and all
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert healed.output == {"confirmation": "Thanks, Ada!"}
    assert site.hits["POST /thanks"] == 4 and not site.hits["GET /privacy"]
    event = HealingEvent.objects.get(run=healed)
    assert event.error_type == "timeout"
    assert event.status == S.DEPLOYED, event.reason
    assert 'id="consent"' in event.error_message
    # The least consent it offers: "Reject all", not "Accept all"; registered once, before the first step.
    old_lines, new_lines = event.original_version.code.splitlines(), event.new_version.code.splitlines()
    assert new_lines[0] == old_lines[0] and new_lines[2:] == old_lines[1:]
    # Looked for inside the banner only: a "Reject all" elsewhere on a later page is none of its business.
    assert new_lines[1] == (
        '    page.add_locator_handler(page.locator("#consent").locator(\'role=button[name="Reject all"s]\'), '
        "lambda button: button.click())"
    )
    assert 'id="consent"' in event.root_cause and "#submit" in event.root_cause and "Reject all" in event.root_cause


def test_a_newsletter_pop_up_over_a_cookie_banner_is_closed_first_and_both_whenever_they_show(drain):
    banner = consent_banner(f'<button {CLOSES_CONSENT}>Reject all</button>')
    pop_up = (
        '<div id="newsletter" style="position:fixed;inset:0;z-index:11;background:rgba(0,0,0,.2)">'
        '<h2>Get 10% off</h2><button aria-label="Close" '
        "onclick=\"document.getElementById('newsletter').remove()\">\u00d7</button></div>"
    )
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        site.pages["/contact"] = under_layers(banner + pop_up)
        healed = run_now(task, drain)
        task.refresh_from_db()
        assert run_now(task, drain).status == Run.Status.SUCCEEDED  # both handlers, in the order that works
    event = HealingEvent.objects.get(run=healed)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert event.status == S.DEPLOYED, event.reason
    assert [r["layer_selector"] for r in event.recovery] == ["#newsletter", "#consent"]
    handlers = [line for line in event.new_version.code.splitlines() if "add_locator_handler" in line]
    assert len(handlers) == 2 and "#newsletter" in handlers[0] and "#consent" in handlers[1]
    assert 'id="newsletter"' in event.root_cause and 'id="consent"' in event.root_cause


def test_a_cookie_banner_drawn_in_a_frame_of_another_origin_is_closed_inside_the_frame(drain):
    # As consent tools serve it: a full-page container with an iframe from their own host, which asks the page,
    # by postMessage, to remove the container.
    container = (
        '<div id="consent-container" style="position:fixed;inset:0;z-index:10;background:rgba(0,0,0,.4)">'
        '<iframe title="Consent" src="{frame_url}" style="width:100%;height:100%;border:0"></iframe></div>'
        "<script>addEventListener('message', (e) => { if (e.data === 'consent-done') "
        "document.getElementById('consent-container').remove(); });</script>"
    )
    answer = "onclick=\"parent.postMessage('consent-done', '*')\""
    frame = (
        f'<p>We and our partners use cookies.</p><button {answer}>Accept all</button> '
        f'<button {answer}>Reject all</button>'
    )
    with contact_site(1) as site:
        site.pages["/consent-frame"] = frame
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        frame_url = site.url.replace("127.0.0.1", "localhost") + "/consent-frame"  # another origin
        site.pages["/contact"] = under_layers(container.replace("{frame_url}", frame_url))
        healed = run_now(task, drain)
        task.refresh_from_db()
        assert run_now(task, drain).status == Run.Status.SUCCEEDED  # the handler reaches into the frame
    event = HealingEvent.objects.get(run=healed)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert event.status == S.DEPLOYED, event.reason
    assert site.hits["POST /thanks"] == 4  # first, healed, validation and the new version's runs
    # Validation may load the frame from its host, and only the frame: the page stays on the task's site.
    assert pipeline.validation_frame_hosts(event.validation_run) == ["localhost"]
    assert pipeline.validation_hosts(event.validation_run) == ["127.0.0.1"]
    assert (
        '    page.add_locator_handler(page.frame_locator("#consent-container iframe")'
        '.locator(\'role=button[name="Reject all"s]\'), lambda button: button.click())'
    ) in event.new_version.code


def test_a_banner_that_says_saving_then_fades_out_is_the_same_banner_until_it_goes(drain):
    # Many consent tools acknowledge the choice before they go: the layer changes, and it is not a new one.
    saves_then_goes = (
        "onclick=\"const c = document.getElementById('consent'); c.querySelector('[role=dialog]').innerHTML = "
        "'<p>Saving your choices</p>'; c.style.transition = 'opacity .4s'; c.style.opacity = 0; "
        "setTimeout(() => c.remove(), 600)\""
    )
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        site.pages["/contact"] = under_layers(consent_banner(f"<button {saves_then_goes}>Reject all</button>"))
        healed = run_now(task, drain)
    event = HealingEvent.objects.get(run=healed)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert event.status == S.DEPLOYED, event.reason
    assert [r["kind"] for r in event.recovery] == ["layer"]
    assert event.new_version.code.count("add_locator_handler") == 1


def test_a_renamed_button_under_a_new_cookie_banner_is_found_and_the_banner_closed(drain):
    banner = consent_banner(f'<button {CLOSES_CONSENT}>Accept all</button>')
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/contact"] = under_layers(banner, version=2)
        healed = run_now(task, drain)
        task.refresh_from_db()
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
    event = HealingEvent.objects.get(run=healed)
    assert healed.status == Run.Status.HEALED, _explain(healed)
    assert event.status == S.DEPLOYED, event.reason
    assert [r["kind"] for r in event.recovery] == ["selector", "layer"]
    code = event.new_version.code
    assert 'page.add_locator_handler(page.locator("#consent").locator(' in code and '#submit' not in code
    assert event.root_cause.index("no longer matches") < event.root_cause.index("now covers")


def test_a_layer_with_no_button_that_closes_it_is_not_healed(drain):
    banner = consent_banner('<a href="/privacy">Manage your choices on our privacy page</a>')
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        first_version = task.current_version
        site.pages["/contact"] = under_layers(banner)
        run = run_now(task, drain)
    assert run.status == Run.Status.FAILED
    event = HealingEvent.objects.get(task=task)
    assert event.status == S.FAILED
    assert 'id="consent"> (' in event.reason and "has no button that closes it and still covers" in event.reason
    assert not site.hits["GET /privacy"]
    task.refresh_from_db()
    assert task.current_version == first_version


def test_a_loading_overlay_that_goes_away_by_itself_gets_a_longer_timeout(drain):
    overlay = (
        '<div id="loading" style="position:fixed;inset:0;background:#fff">Loading\u2026</div>'
        "<script>setTimeout(() => document.getElementById('loading').remove(), 6500)</script>"
    )
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True, trigger_on=["timeout"])
        run_now(task, drain)
        site.pages["/contact"] = under_layers(overlay)
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert 'id="loading"' in event.error_message
    assert event.status == S.DEPLOYED, event.reason
    assert 'page.click("#submit", timeout=' in event.new_version.code
    assert "add_locator_handler" not in event.new_version.code


def test_an_option_whose_value_a_release_renamed_is_chosen_by_its_label(drain):
    def page(values: tuple[str, str]) -> str:
        options = "".join(f'<option value="{v}">{label}</option>' for v, label in zip(values, ("France", "Germany")))
        return ('<form method="post" action="/thanks"><label for="name">Name</label><input id="name" name="name">'
                f'<select id="country" name="country">{options}</select><button id="submit">Send</button></form>')

    code = CONTACT_CODE.replace("    # Send the form.", '    page.select_option("#country", "DE")')
    with serve({"/contact": page(("FR", "DE")),
                "/thanks": lambda r: f'<p class="confirmation">{r.form.get("name")}, {r.form.get("country")}</p>'}) as site:
        task = make_task(site, code=code, auto_deploy=True)
        assert run_now(task, drain).output == {"confirmation": "Ada, DE"}
        site.pages["/contact"] = page(("fr-FR", "de-DE"))
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Ada, de-DE"}
    assert site.hits["POST /thanks"] == 3  # the run was completed, not restarted; then validated once
    assert event.status == S.DEPLOYED, event.reason
    assert 'page.select_option("#country", label="Germany")' in event.new_version.code
    assert "\u201cGermany\u201d of `#country` on line 4 now has the value \u201cde-DE\u201d" in event.root_cause


def test_a_button_rendered_only_once_scrolled_into_view_is_scrolled_to(drain):
    lazy = (
        '<form method="post" action="/thanks"><label for="name">Name</label><input id="name" name="name">'
        '<div style="height:3000px">Tell us more below.</div><div id="more"></div></form>'
        '<template id="button"><button id="submit" type="submit">Send</button></template>'
        "<script>new IntersectionObserver((seen, observer) => { if (!seen[0].isIntersecting) return; observer.disconnect();"
        " more.replaceWith(document.getElementById('button').content.cloneNode(true)); }).observe(more);</script>"
    )
    run, event = heal_after_contact_page_changes(drain, lazy)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    scrolled = [line.strip() for line in event.new_version.code.splitlines() if "wheel" in line]
    assert len(scrolled) == 1 and re.fullmatch(r"page\.mouse\.wheel\(0, \d+\)", scrolled[0]), event.new_version.code
    assert 'page.click("#submit")' in event.new_version.code
    assert "rendered only once scrolled into view" in event.root_cause


def test_a_slow_form_submission_is_waited_for_not_submitted_again(drain):
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/thanks"] = lambda request: Response(thanks(request), delay=7)  # the click's timeout is 5 s
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Thanks, Ada!"}
    # One POST for the v1 run, one for the healed run (the click had happened: it is not clicked again), one for
    # the validation run.
    assert site.hits["POST /thanks"] == 3
    assert "was acted on, but the page it led to did not load in time" in event.error_message
    assert event.status == S.DEPLOYED, event.reason
    assert 'page.click("#submit", timeout=' in event.new_version.code


def test_a_slow_form_that_answers_on_its_own_address_is_waited_for_not_submitted_again(drain):
    """The form posts to the page it is on, which answers with the confirmation: the address never changes, so
    only a new document tells that the answer has come."""
    def contact(request):
        if request.method != "POST":
            return contact_page(1).replace('action="/thanks"', 'action="/contact"')
        return Response(thanks(request), delay=7 if site_version["v"] == 2 else 0)  # the click's timeout is 5 s

    with serve({"/contact": contact}) as site:
        task = make_task(site, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site_version["v"] = 2
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert site.hits["POST /contact"] == 3  # v1, the healed run (not clicked again), the validation run
    assert event.status == S.DEPLOYED, event.reason
    assert 'page.click("#submit", timeout=' in event.new_version.code


def test_a_captcha_needs_a_human_and_changes_no_code(drain):
    captcha = (
        '<div class="g-recaptcha" data-sitekey="x"></div>'
        '<iframe title="reCAPTCHA" src="about:blank"></iframe><p>Verify you are human</p>'
    )
    with serve({"/catalog": '<ul class="products"><li>Mug</li></ul>'}) as site:
        task = make_task(site, code=CATALOG_CODE, auto_deploy=True, trigger_on=["captcha_detected", "element_not_found"])
        run_now(task, drain)
        site.pages["/catalog"] = captcha
        run = run_now(task, drain)
    assert run.status == Run.Status.FAILED
    event = HealingEvent.objects.get(task=task)
    assert event.error_type == "captcha_detected"
    assert event.status == S.FAILED
    assert "needs a human" in event.reason
    assert event.screenshot
    assert event.new_version is None


def test_a_validation_run_may_not_navigate_off_the_tasks_sites(drain):
    """The draft it validates is machine-written and unreviewed: a goto to a host the task never used
    (here `localhost`, the same server under another name) is blocked, so the validation fails."""
    from tasks_app.models import CodeVersion

    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        healed = run_now(task, drain)  # succeeds on v1; stands in for the healed run
        foreign = site.url.replace("127.0.0.1", "localhost")
        draft = services.version_create(
            task=task, code=CONTACT_CODE.replace('params["base_url"] + "/contact"', f'"{foreign}/contact"'),
            source=CodeVersion.Source.HEALED, parent=task.current_version,
        )
        event = HealingEvent.objects.create(
            task=task, run=healed, error_type="element_not_found", original_version=task.current_version,
            new_version=draft, status=S.HEALING,
        )
        assert pipeline.validation_hosts(healed) == ["127.0.0.1"]  # no validation run yet: params and nothing else
        pipeline._start_validation(event)
        drain()
    event.refresh_from_db()
    validation = event.validation_run
    assert validation.status == Run.Status.FAILED
    assert "blocked" in validation.error_message and "localhost" in validation.error_message
    assert pipeline.validation_hosts(validation) == ["127.0.0.1"]
    assert event.status == S.FAILED
    assert site.hits.get("GET /contact", 0) == 1  # only the first run's; the draft never reached the page
    task.refresh_from_db()
    assert task.current_version == event.original_version


def test_a_form_moved_into_an_iframe_is_filled_and_sent_inside_the_frame(drain):
    """A redesign embeds the contact form as a page of its own in an iframe: every step of the form breaks in the
    same run (the name field, the button, the confirmation shown in the frame) and each is found inside it."""
    embedded = '<h1>Contact</h1><p>Write to us.</p><iframe id="contact-form" title="Contact form" src="/contact-form"></iframe>'
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        assert run_now(task, drain).status == Run.Status.SUCCEEDED
        site.pages["/contact"] = embedded
        site.pages["/contact-form"] = contact_page(1)
        run = run_now(task, drain)
        task.refresh_from_db()
        rerun = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert site.hits["POST /thanks"] == 4  # v1, the healed run (not restarted), its validation, the rerun
    assert event.status == S.DEPLOYED, event.reason
    assert event.validation_run.status == Run.Status.SUCCEEDED
    assert event.new_version.code.splitlines()[2:6] == [
        '    page.frame_locator("#contact-form").locator("#name").fill(params["name"])',
        "    # Send the form.",
        '    page.frame_locator("#contact-form").locator("#submit").click()',
        '    return {"confirmation": page.frame_locator("#contact-form").locator(".confirmation").inner_text()}',
    ], event.new_version.code
    assert "now inside the frame `#contact-form`" in event.root_cause and "line 3" in event.root_cause
    # The new version's steps inside the frame are steps like any other: recorded, each with its fingerprint.
    assert rerun.status == Run.Status.SUCCEEDED and rerun.output == {"confirmation": "Thanks, Ada!"}
    filled = next(step for step in rerun.trace if step["action"] == "fill")
    assert filled["selector"] == "#contact-form >> internal:control=enter-frame >> #name"
    assert filled["fingerprint"]["id"] == "name" and filled["frame_url"] == f"{site.url}/contact-form"
    sent = next(step for step in rerun.trace if step["action"] == "click")
    assert sent["url"] == f"{site.url}/contact" and sent["frame_url"] == f"{site.url}/thanks"


def test_a_look_alike_form_in_a_frame_is_not_used_when_the_field_is_still_on_the_page(drain):
    """A newsletter form in an iframe has its own Name field; the page's field was only renamed: the page's is the one."""
    newsletter = '<form><label for="name">Name</label><input id="name" name="name"><button>Subscribe</button></form>'
    renamed = contact_page(1).replace('for="name"', 'for="full-name"').replace('id="name"', 'id="full-name"')
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/contact"] = renamed.replace("</body>", '<iframe id="nl" src="/newsletter-form"></iframe></body>')
        site.pages["/newsletter-form"] = newsletter
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert event.status == S.DEPLOYED, event.reason
    assert "frame_locator" not in event.new_version.code
    assert "page.fill('role=textbox[name=\"Name\"s]', params[\"name\"])" in event.new_version.code
    assert event.chosen_element["id"] == "full-name"


FRAMED_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    form = page.frame_locator("#contact-form")
    form.locator("#name").fill(params["name"])
    form.get_by_role("button", name="Send").click()
    return {"confirmation": form.locator(".confirmation").inner_text()}
'''


@pytest.mark.parametrize("dx, dy", [(0, 0), (400, 900)], ids=["frame at the top", "frame low on the page"])
def test_steps_inside_a_frame_are_recorded_and_a_button_renamed_there_heals_in_place(drain, dx, dy):
    """A step's fingerprint places its element on the page, as the frame's observation for a heal places the
    elements it compares it with (in the frame's own coordinates, the button is at 8, 87 wherever the frame is)."""
    embedded = (f'<h1>Contact</h1><div style="height:{dy}px"></div><iframe id="contact-form" title="Contact form" '
                f'src="/contact-form" style="margin-left:{dx}px"></iframe>')
    with contact_site(1) as site:
        site.pages["/contact"] = embedded
        site.pages["/contact-form"] = contact_page(1)
        task = make_task(site, code=FRAMED_CODE, auto_deploy=True)
        first = run_now(task, drain)
        site.pages["/contact-form"] = contact_page(1).replace(">Send<", ">Submit<")
        run = run_now(task, drain)
    assert first.status == Run.Status.SUCCEEDED
    clicked = next(step for step in first.trace if step["action"] == "click")
    assert clicked["selector"] == '#contact-form >> internal:control=enter-frame >> internal:role=button[name="Send"i]'
    assert clicked["fingerprint"]["id"] == "submit" and clicked["frame_url"] == f"{site.url}/thanks"
    assert clicked["fingerprint"]["x"] > dx and clicked["fingerprint"]["y"] > dy, clicked["fingerprint"]
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[4] == "    form.locator('role=button[name=\"Submit\"s]').click()", event.new_version.code


def custom_dropdown(label: str = "Country") -> str:
    """A native select redone as a button that opens a list box (as design systems draw them); a hidden input
    carries the choice to the form."""
    return (
        f'<span id="country-label">{label}</span>'
        '<button type="button" id="country-button" aria-haspopup="listbox" aria-expanded="false" '
        'aria-labelledby="country-label country-button" onclick="const l = document.getElementById(\'country-list\');'
        ' l.hidden = !l.hidden; this.setAttribute(\'aria-expanded\', !l.hidden)">Choose\u2026</button>'
        '<ul role="listbox" id="country-list" hidden>'
        '<li role="option" data-value="FR">France</li><li role="option" data-value="DE">Germany</li></ul>'
        '<input type="hidden" name="country" id="country-value">'
        "<script>for (const o of document.querySelectorAll('[role=option]')) o.onclick = () => {"
        " document.getElementById('country-value').value = o.dataset.value;"
        " document.getElementById('country-button').textContent = o.textContent;"
        " document.getElementById('country-list').hidden = true; };</script>"
    )


def test_a_select_redone_as_a_custom_drop_down_is_opened_and_the_same_option_clicked(drain):
    def page(fields: str) -> str:
        return ('<form method="post" action="/thanks"><label for="name">Name</label><input id="name" name="name">'
                f'{fields}<button id="submit">Send</button></form>')

    native = '<label for="country">Country</label><select id="country" name="country"><option value="FR">France</option>' \
             '<option value="DE">Germany</option></select>'
    code = CONTACT_CODE.replace("    # Send the form.", '    page.select_option("#country", "DE")')
    with serve({"/contact": page(native),
                "/thanks": lambda r: f'<p class="confirmation">{r.form.get("name")}, {r.form.get("country")}</p>'}) as site:
        task = make_task(site, code=code, auto_deploy=True)
        assert run_now(task, drain).output == {"confirmation": "Ada, DE"}
        site.pages["/contact"] = page(custom_dropdown())
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Ada, DE"}
    assert site.hits["POST /thanks"] == 3  # the run was completed, not restarted; then validated once
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[3:5] == [
        '    page.click("#country-button")', "    page.click('role=option[name=\"Germany\"s]')"
    ], event.new_version.code
    assert "now a drop-down" in event.root_cause and "\u201cGermany\u201d" in event.root_cause


def test_a_field_removed_from_the_page_is_not_typed_into_a_newsletter_frame_of_the_site(drain):
    """The contact form lost its Name field and the page now embeds the site's newsletter sign-up, whose Name field
    looks the same: the form is still on the page (its Send button is), so the field did not move into that frame."""
    newsletter = ('<form method="post" action="/subscribe"><label for="name">Name</label><input id="name" name="name">'
                  '<button>Subscribe</button></form>')
    without_name = contact_page(1).replace('<label for="name">Name</label><input id="name" name="name">', "")
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        first_version = run_now(task, drain).version
        site.pages["/contact"] = without_name.replace("</body>", '<iframe id="nl" src="/newsletter-form"></iframe></body>')
        site.pages["/newsletter-form"] = newsletter
        run = run_now(task, drain)
    task.refresh_from_db()
    assert run.status == Run.Status.FAILED, _explain(run)
    assert task.current_version == first_version
    assert not HealingEvent.objects.filter(status=S.DEPLOYED).exists()


def test_a_checkbox_redone_as_a_switch_is_checked_not_the_words_beside_it(drain):
    def page(terms: str) -> str:
        return f'<form method="post" action="/thanks"><input id="name" name="name">{terms}<button id="submit">Send</button></form>'

    switch = (
        '<button type="button" role="switch" id="terms-switch" aria-checked="false" aria-labelledby="terms-label" '
        "onclick=\"const on = this.getAttribute('aria-checked') !== 'true'; this.setAttribute('aria-checked', on);"
        " document.getElementById('terms-value').value = on ? 'yes' : ''\"></button>"
        '<span id="terms-label">I accept the terms</span><input type="hidden" name="terms" id="terms-value">'
    )
    checkbox = '<input type="checkbox" id="terms" name="terms" value="yes"><label for="terms">I accept the terms</label>'
    code = CONTACT_CODE.replace("    # Send the form.", '    page.check("#terms")')
    with serve({"/contact": page(checkbox),
                "/thanks": lambda r: f'<p class="confirmation">{r.form.get("name")}: {r.form.get("terms") or "no"}</p>'}) as site:
        task = make_task(site, code=code, auto_deploy=True)
        assert run_now(task, drain).output == {"confirmation": "Ada: yes"}
        site.pages["/contact"] = page(switch)
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert run.status == Run.Status.HEALED, event.reason
    assert run.output == {"confirmation": "Ada: yes"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.chosen_element["id"] == "terms-switch"


def tabbed_contact_page(overview: str, details: str) -> str:
    """The contact form split into two tabs (the WAI-ARIA tabs pattern): the second panel hidden until its tab is
    clicked."""
    return (
        '<form method="post" action="/thanks"><div role="tablist">'
        '<button type="button" role="tab" id="tab-1" aria-selected="true" aria-controls="panel-1" onclick="show(1)">'
        'Overview</button><button type="button" role="tab" id="tab-2" aria-selected="false" aria-controls="panel-2" '
        'onclick="show(2)">Your details</button></div>'
        f'<div role="tabpanel" id="panel-1" aria-labelledby="tab-1">{overview}</div>'
        f'<div role="tabpanel" id="panel-2" aria-labelledby="tab-2" hidden>{details}</div></form>'
        "<script>function show(n) { for (const i of [1, 2]) { document.getElementById('panel-' + i).hidden = i !== n;"
        " document.getElementById('tab-' + i).setAttribute('aria-selected', String(i === n)); } }</script>"
    )


def accordion_panel(heading: str, content: str, panel_id: str = "panel-you") -> str:
    """A closed accordion panel (the WAI-ARIA accordion pattern): its heading's button shows and hides it."""
    return (
        f'<h3><button type="button" aria-expanded="false" aria-controls="{panel_id}" onclick="const p = '
        "document.getElementById(this.getAttribute('aria-controls')); p.hidden = !p.hidden; "
        f"this.setAttribute('aria-expanded', String(!p.hidden))\">{heading}</button></h3>"
        f'<div id="{panel_id}" role="region" hidden>{content}</div>'
    )


def test_a_field_folded_into_a_closed_accordion_panel_is_filled_after_opening_the_panel(drain):
    folded = (
        '<form method="post" action="/thanks">'
        + accordion_panel("About you", '<label for="name">Name</label><input id="name" name="name">')
        + '<button id="submit" type="submit">Send</button></form>'
    )
    run, event = heal_after_contact_page_changes(drain, folded)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.error_type == "timeout"  # the field is there, only hidden
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[2:4] == [
        "    page.click('role=button[name=\"About you\"s]')", '    page.fill("#name", params["name"])',
    ], event.new_version.code


RENAMED_SEND_BUTTON = '<button id="send-message" type="submit" class="btn primary">Send</button>'


@pytest.mark.parametrize(("new_page", "opening"), [
    (tabbed_contact_page('<label for="name">Name</label><input id="name" name="name">',
                         f"<p>Check your message.</p>{RENAMED_SEND_BUTTON}"),
     "    page.click('role=tab[name=\"Your details\"s]')"),
    # The old neighbour (Clear) now sits where the button was: the button, in its own form still, is the one.
    (contact_page(1).replace('<button id="submit" type="submit" class="btn primary">Send</button>',
                             f"<details><summary>Ready? Send it</summary>{RENAMED_SEND_BUTTON}</details>"),
     "    page.click('text=\"Ready? Send it\"')"),
], ids=["into a second tab", "into a closed details"])
def test_a_renamed_button_moved_into_a_closed_part_of_its_form_is_clicked_after_opening_that(drain, new_page, opening):
    run, event = heal_after_contact_page_changes(drain, new_page)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[3:6] == [
        opening, "    # Send the form.", "    page.click('role=button[name=\"Send\"s]')",
    ], event.new_version.code


def test_a_look_alike_button_of_another_form_in_a_closed_section_is_never_pressed(drain):
    """The contact form lost its button; a closed "Newsletter" section below has a Send button just like it."""
    newsletter = (
        '<details><summary>Newsletter</summary><form method="post" action="/newsletter"><input id="nl" name="nl">'
        '<button id="newsletter-send" type="submit" class="btn primary">Send</button></form></details>'
    )
    without_its_button = contact_page(1).replace(V1_BUTTON, "").replace("</body>", newsletter + "</body>")
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site.pages["/contact"] = without_its_button
        run = run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    assert site.hits["POST /newsletter"] == 0
    assert run.status == Run.Status.FAILED and event.status == S.FAILED
    assert "locator abstained" in event.reason


def test_a_form_moved_into_a_modal_dialog_is_filled_after_the_button_that_names_the_dialog_opens_it(drain):
    """As Bootstrap builds it: the opener names the dialog (data-bs-target) from elsewhere in the page."""
    in_a_dialog = (
        '<h1>Contact</h1><button type="button" data-bs-toggle="modal" data-bs-target="#write-to-us" '
        "onclick=\"document.getElementById('write-to-us').showModal()\">Write to us</button>"
        '<dialog id="write-to-us"><form method="post" action="/thanks"><label for="name">Name</label>'
        '<input id="name" name="name"><button id="submit" type="submit">Send</button></form></dialog>'
    )
    run, event = heal_after_contact_page_changes(drain, in_a_dialog)
    assert run.status == Run.Status.HEALED, _explain(run)
    assert run.output == {"confirmation": "Thanks, Ada!"}
    assert event.status == S.DEPLOYED, event.reason
    assert event.new_version.code.splitlines()[2:4] == [
        "    page.click('role=button[name=\"Write to us\"s]')", '    page.fill("#name", params["name"])',
    ], event.new_version.code
