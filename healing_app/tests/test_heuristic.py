"""Unit tests for the heuristic agent's pure helpers (the browser-driven paths are in test_heal_e2e.py)."""

import pytest

from healing_app.agents import heuristic
from healing_app.agents.base import TakeoverContext
from healing_app.agents.heuristic import (
    HeuristicAgent,
    _link_sources,
    _loads_more,
    _login_form,
    _password_step,
    _rank_links,
    _the_steps_form,
    _user_name_step,
    closing_button,
    describe_selector_change,
)
from healing_app.tests.fake_openai import FakeHandover
from tasks_app.runner.errors import layer_name


def test_moved_page_candidates_start_from_the_tasks_base_url_and_the_broken_pages_folder():
    assert _link_sources("http://shop.test/catalog", "http://shop.test") == ["http://shop.test/"]
    assert _link_sources("http://shop.test/a/b/catalog", "http://shop.test/") == [
        "http://shop.test/", "http://shop.test/a/b/"
    ]
    assert _link_sources("http://shop.test/catalog", None) == ["http://shop.test/"]


def test_a_site_under_a_path_is_searched_from_its_own_root_never_the_hosts():
    # The demo site lives at /demo-site/ beside Anchor's dashboard at "/": the dashboard is not the site.
    sources = _link_sources("http://shop.test/demo-site/catalog", "http://shop.test/demo-site")
    assert sources == ["http://shop.test/demo-site/"]
    deeper = _link_sources("http://shop.test/demo-site/shop/catalog", "http://shop.test/demo-site/")
    assert deeper == ["http://shop.test/demo-site/", "http://shop.test/demo-site/shop/"]
    # A broken page outside the base path (the code went elsewhere on the host) still gets the host's root.
    assert _link_sources("http://shop.test/other/x", "http://shop.test/demo-site") == [
        "http://shop.test/demo-site/", "http://shop.test/other/", "http://shop.test/"
    ]


def test_links_are_ranked_by_name_with_synonyms_and_the_broken_path_is_never_a_candidate():
    links = [
        {"href": "/demo-site/catalog", "text": "Catalog"},
        {"href": "/demo-site/products", "text": "Our products"},
        {"href": "/demo-site/about", "text": "About us"},
        {"href": "http://elsewhere.test/products", "text": "Products"},
    ]
    ranked = _rank_links("/demo-site/catalog", "http://shop.test", links)
    assert [url for _, url, _ in ranked][0] == "http://shop.test/demo-site/products"
    assert all("elsewhere" not in url and not url.endswith("/catalog") for _, url, _ in ranked)


def test_the_home_page_of_a_site_under_a_path_is_not_a_candidate_for_the_moved_page():
    # "/demo-site/" shares every word of "/demo-site/catalog" but is the site's home, like "/" for a site at the root.
    links = [{"href": "/demo-site/", "text": "Home"}, {"href": "/demo-site", "text": "Home"},
             {"href": "/demo-site/products", "text": "Our products"}]
    ranked = _rank_links("/demo-site/catalog", "http://shop.test", links, home_path="/demo-site/")
    assert [url for _, url, _ in ranked] == ["http://shop.test/demo-site/products"]
    assert len(_rank_links("/demo-site/catalog", "http://shop.test", links)) == 3  # a site at the root: "/" only


def test_login_form_prefers_the_user_field_and_the_sign_in_button():
    forms = [
        {"inputs": [{"type": "search", "name": "q", "ref": 1}], "submits": [{"text": "Search", "ref": 2}]},
        {
            "inputs": [
                {"type": "text", "name": "nickname", "ref": 3},
                {"type": "email", "name": "email", "label": "Email", "ref": 4},
                {"type": "password", "name": "pass", "ref": 5},
            ],
            "submits": [{"text": "Forgot password?", "ref": 6}, {"text": "Sign in", "ref": 7}],
        },
    ]
    user, password, submit = _login_form(forms)
    assert (user["ref"], password["ref"], submit["ref"]) == (4, 5, 7)


def test_no_login_form_without_a_visible_password_field():
    assert _login_form([{"inputs": [{"type": "password", "visible": False, "ref": 1}], "submits": [{"ref": 2}]}]) is None


def field(name, **extra):
    return {"tag": "input", "type": "text", "name": name, "visible": True, **extra}


def test_the_first_step_of_a_two_step_login_is_one_user_name_field_and_a_next_button():
    first_step = {"inputs": [field("identifier", autocomplete="username", ref=1)], "submits": [{"text": "Next", "ref": 2}]}
    assert [item["ref"] for item in _user_name_step([first_step])] == [1, 2]
    with_remember_me = {**first_step, "inputs": [*first_step["inputs"], field("remember", type="checkbox")]}
    assert _user_name_step([with_remember_me]) is not None


@pytest.mark.parametrize("form", [
    # The secrets would be typed into these: a newsletter, a search box, a contact form, a sign-up.
    {"inputs": [field("email", type="email")], "submits": [{"text": "Subscribe"}]},
    {"inputs": [field("email", type="email")], "submits": [{"text": "Continue"}], "action": "/newsletter"},
    {"inputs": [field("email", type="email", label="Email")], "submits": [{"text": "Continue"}],
     "action": "/password/reset"},
    {"inputs": [field("user", label="Forgot your username? Enter your email")], "submits": [{"text": "Next"}]},
    {"inputs": [field("q", placeholder="Search")], "submits": [{"text": "Search"}]},
    {"inputs": [field("name"), field("email", type="email"), {"tag": "textarea", "name": "message"}],
     "submits": [{"text": "Continue"}]},
    {"inputs": [field("email", type="email")], "submits": [{"text": "Next"}], "action": "/register"},
    {"inputs": [field("user"), field("pass", type="password")], "submits": [{"text": "Next"}]},  # one step
    {"inputs": [{"tag": "select", "name": "account"}], "submits": [{"text": "Continue"}]},
])
def test_no_other_form_is_taken_for_the_user_name_step(form):
    assert _user_name_step([form]) is None


def test_the_second_step_has_one_password_field_and_is_no_sign_up():
    assert _password_step([{"inputs": [field("pw", type="password", ref=3)], "submits": [{"text": "Sign in", "ref": 4}]}])
    new_password = {"inputs": [field("pw", type="password", autocomplete="new-password")], "submits": [{"text": "Go"}]}
    assert _password_step([new_password]) is None
    assert _password_step([{"inputs": [field("a", type="password"), field("b", type="password")], "submits": [{}]}]) is None


def test_root_cause_names_the_line_the_old_selector_the_new_one_and_why():
    text = describe_selector_change(
        {
            "line": 14,
            "old_selector": "#submit",
            "new_selector": '[data-testid="send"]',
            "confidence": 0.97,
            "before": {"tag": "BUTTON", "id": "submit", "text": "Send"},
            "after": {"tag": "BUTTON", "id": "send-message", "text": "Send"},
        }
    )
    assert "`#submit` on line 14" in text
    assert "id changed from \u201csubmit\u201d to \u201csend-message\u201d" in text
    assert '[data-testid="send"]' in text and "97%" in text


def test_root_cause_first_names_what_the_old_selector_quoted():
    relabelled = describe_selector_change(
        {
            "line": 3,
            "old_selector": 'get_by_label("Your name")',
            "new_selector": 'get_by_role("textbox", name="Full name")',
            "before": {"tag": "INPUT", "id": "name", "neighbor_text": "Your name"},
            "after": {"tag": "INPUT", "id": "full-name", "neighbor_text": "Full name"},
        }
    )
    assert "no longer matches: its label changed from \u201cYour name\u201d to \u201cFull name\u201d; its id changed" in relabelled
    placeholder = describe_selector_change(
        {
            "line": 3,
            "old_selector": "input[placeholder='Your name']",
            "new_selector": "#name",
            "before": {"tag": "INPUT", "id": "name", "placeholder": "Your name", "neighbor_text": "Contact"},
            "after": {"tag": "INPUT", "id": "name", "placeholder": "Full name", "neighbor_text": "Write to us"},
        }
    )
    assert "no longer matches: its placeholder changed from \u201cYour name\u201d to \u201cFull name\u201d." in placeholder
    assert "label" not in placeholder  # the text beside a field is named only when the selector quoted it


def test_a_relabelled_link_in_the_same_place_is_a_structural_match_but_a_shared_target_is_not():
    from healing_app.agents.heuristic import _structural_match
    from healing_app.locate import LocateResult

    target = {"tag": "A", "text": "Catalog", "href": "/catalog", "xpath": "/html[1]/body[1]/nav[1]/a[1]"}
    relabelled = {"tag": "A", "text": "Shop", "href": "/catalog", "xpath": "/html[1]/body[1]/nav[1]/a[1]"}
    other = {"tag": "A", "text": "About", "href": "/about", "xpath": "/html[1]/body[1]/nav[1]/a[2]"}
    hesitant = LocateResult(
        index=None, score=11.0, confidence=0.93, margin=3.5, abstained=True, reason="evidence too weak",
        ranked=((0, 11.0), (1, 7.5)),
    )
    assert _structural_match(target, [relabelled, other], hesitant) == 0
    twin = {**other, "href": "/catalog"}
    assert _structural_match(target, [relabelled, twin], hesitant) is None
    moved = {**relabelled, "xpath": "/html[1]/body[1]/footer[1]/a[1]"}
    assert _structural_match(target, [moved, other], hesitant) is None


def _form(action, button, *passwords, user=True):
    inputs = [{"type": "email", "id": "e", "label": "Email", "visible": True}] if user else []
    inputs += [{"type": "password", "id": f"p{n}", **fields, "visible": True} for n, fields in enumerate(passwords)]
    return {"action": action, "inputs": inputs, "submits": [{"text": button, "visible": True}]}


@pytest.mark.parametrize("sign_up", [
    _form("/register", "Continue", {"label": "Password"}),
    _form("/account", "Create account", {"label": "Password"}),
    _form("/account", "Continue", {"label": "Password"}, {"label": "Repeat password"}),
    _form("/account", "Continue", {"label": "Password", "autocomplete": "new-password"}),
])
def test_a_sign_up_form_is_never_taken_for_the_login_form(sign_up):
    sign_in = _form("/session", "Sign in", {"label": "Password", "autocomplete": "current-password"})
    assert _login_form([sign_up, sign_in])[2]["text"] == "Sign in"
    assert _login_form([sign_up]) is None


LAYER = "/html[1]/body[1]/div[2]"
COOKIES = {"xpath": LAYER, "text": "We use cookies to make this site work."}
POP_UP = {"xpath": LAYER, "text": "Get 10% off your first order"}


def button(text, *, xpath=LAYER + "/div[1]/button[1]", **extra):
    return {"tag": "BUTTON", "text": text, "name_text": text, "is_button": "yes", "role": "button", "xpath": xpath, **extra}


def test_a_layer_is_closed_without_answering_first_then_with_the_least_consent():
    accept = button("Accept all", xpath=LAYER + "/div[1]/button[1]")
    reject = button("Reject all", xpath=LAYER + "/div[1]/button[2]")
    close = button("", aria_label="Close", xpath=LAYER + "/button[1]")
    assert closing_button([accept, reject, close], COOKIES) is close
    assert closing_button([accept, reject], COOKIES) is reject
    assert closing_button([accept], COOKIES) is accept
    assert closing_button([button("\u00d7")], COOKIES) is not None  # a bare "×"
    assert closing_button([button("Accept & continue")], COOKIES) is not None


@pytest.mark.parametrize("buttons", [
    # Not a question about cookies: these answers are the user's to give.
    ["Cancel", "OK"], ["Accept", "Decline"], ["Approve", "Deny"], ["Keep editing", "Discard changes", "OK"],
])
def test_a_layer_that_is_not_about_cookies_is_only_closed_never_answered(buttons):
    assert closing_button([button(text) for text in buttons], POP_UP) is None
    assert closing_button([button(text) for text in buttons] + [button("No thanks")], POP_UP)["text"] == "No thanks"


def test_a_closing_button_must_be_inside_the_layer_enabled_and_must_not_lead_anywhere():
    outside = button("Close", xpath="/html[1]/body[1]/form[1]/button[1]")
    disabled = button("Accept", enabled=False)
    policy = {"tag": "A", "text": "OK", "href": "https://shop.test/privacy", "xpath": LAYER + "/a[1]"}
    sibling = button("Close", xpath=LAYER + "0/button[1]")  # div[20] is not inside div[2]
    assert closing_button([outside, disabled, policy, sibling], COOKIES) is None
    assert closing_button([{**policy, "href": "#"}], COOKIES) is not None  # a link that stays on the page
    assert closing_button([button("Subscribe"), button("Accept cookies and subscribe")], COOKIES) is None
    assert closing_button([button("Close")], {"text": "cookies"}) is None  # no xpath: nothing is inside


@pytest.mark.parametrize(("text", "buttons", "chosen"), [
    ("Wir verwenden Cookies und respektieren Ihren Datenschutz.", ["Alle akzeptieren", "Alle ablehnen"], "Alle ablehnen"),
    ("Nous respectons votre confidentialité.", ["Tout accepter", "Tout refuser"], "Tout refuser"),
    ("Utilizamos cookies.", ["Aceptar todo"], "Aceptar todo"),
    ("Newsletter abonnieren?", ["Abonnieren", "Schließen"], "Schließen"),
])
def test_layers_in_other_languages_are_closed_the_same_way(text, buttons, chosen):
    found = closing_button([button(label) for label in buttons], {"xpath": LAYER, "text": text})
    assert found is not None and found["text"] == chosen


def test_an_icon_only_button_closes_a_layer_when_its_id_or_class_says_so():
    icon = button("", **{"class": "modal__close-btn icon"})
    assert closing_button([button("Subscribe"), icon], POP_UP) is icon
    assert closing_button([button("", id="dismiss")], POP_UP) is not None
    # "closet" and "enclosed" are not "close"; a labelled button is judged by its label alone.
    assert closing_button([button("", **{"class": "closet-icon enclosed"})], POP_UP) is None
    assert closing_button([button("Buy now", **{"class": "close"})], POP_UP) is None


PAGES = '''def run(page, params):
    page.goto(params["base_url"] + "/a")
    page.click("#old")
    page.goto(params["base_url"] + "/b")
    page.click("#next")
'''


def test_recoveries_of_one_run_all_apply_whatever_lines_the_others_insert():
    layer = {"kind": "layer", "line": 3, "selector": "#old", "layer": "<div>", "layer_selector": "#consent",
             "close_selector": "#reject"}
    login = {"kind": "login", "line": 4, "username_selector": "#u", "password_selector": "#p", "submit_selector": "#s",
             "login_url": "/login"}
    renamed = {"kind": "selector", "line": 5, "old_selector": "#next", "new_selector": "#continue"}
    # The banner came back on /b: a second close of the same layer, on line 5.
    patch = HeuristicAgent().write_patch(
        code=PAGES, recoveries=[layer, login, renamed, {**layer, "line": 5}], failure={}, prompt=""
    )
    lines = [line.strip() for line in patch.code.splitlines()]
    assert lines[1].startswith('page.add_locator_handler(page.locator("#consent").locator("#reject")')
    assert patch.code.count("add_locator_handler") == 1
    assert lines[3] == 'page.click("#old")'
    assert lines[4:6] == ['page.goto("/login")', 'page.fill("#u", params["secrets"]["username"])']
    assert lines[-1] == 'page.click("#continue")'
    assert patch.root_cause.index("covers") < patch.root_cause.index("login wall")  # told in the order they happened


OTHER_LAYER = "/html[1]/body[1]/div[3]"


def stacked_layers(*, consent_closes=True, alike=False):
    """A newsletter pop-up drawn over a cookie banner, both over the #send button of SEND; `alike`: two bare
    containers with the same text, which read the same."""
    url = "http://shop.test/contact"
    pop_up = {**POP_UP, "xpath": OTHER_LAYER, "selector": "#newsletter", "ref": 0}
    cookies = {**COOKIES, "selector": "#consent", "ref": 1}
    if alike:
        for layer in (pop_up, cookies):
            layer.update({"tag": "div", "id": "", "class": "", "text": COOKIES["text"]})
    close = {**button("\u00d7", xpath=OTHER_LAYER + "/button[1]"), "ref": 0, "closes": OTHER_LAYER}
    reject = {**button("Reject all"), "ref": 1, **({"closes": LAYER} if consent_closes else {})}
    handover = FakeHandover({url: {"elements": [close, reject]}}, url, selectors={0: ["#newsletter button"], 1: ["#consent button"]},
                            layers={"#send": [pop_up, cookies]}, step_ok=lambda handover, **_: not handover.layers["#send"])
    # The failure's record of the layer has no ref: the agent asks for it again.
    failure = {"type": "timeout", "line": 4, "selector": "#send", "details": {"covered_by": {**pop_up, "ref": None}}}
    context = TakeoverContext(task_id="t", prompt="", code=SEND, failure=failure, stored_fingerprint=None)
    return context, handover


SEND = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")

    page.click("#send")
'''


def test_a_pop_up_over_a_cookie_banner_is_closed_then_the_banner_top_first():
    context, handover = stacked_layers()

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert [a["selector"] for a in handover.ops("act")] == ["#newsletter button", "#consent button"]
    assert (outcome.recovery["layer_selector"], [fix["layer_selector"] for fix in outcome.also]) == ("#newsletter", ["#consent"])
    # The first handler moves the step down a line; the second still finds it.
    patch = HeuristicAgent().write_patch(code=SEND, recoveries=[outcome.recovery, *outcome.also], failure={}, prompt="")
    lines = patch.code.splitlines()
    assert '#newsletter' in lines[1] and '#consent' in lines[2]  # registered in the order they must be closed
    assert lines[3:] == SEND.splitlines()[1:]
    assert patch.root_cause.count("on line 4") == 2  # the line a reviewer sees in the old code


def test_two_layers_alike_by_name_are_told_apart_by_their_refs():
    context, handover = stacked_layers(alike=True)
    assert len({layer_name(layer) for layer in handover.layers["#send"]}) == 1

    assert HeuristicAgent().take_over(context, handover).recovered


def test_a_layer_its_button_does_not_close_is_not_closed_again_and_again(monkeypatch):
    monkeypatch.setattr(heuristic, "LAYER_GOES_S", 0.1)
    context, handover = stacked_layers(consent_closes=False)

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered
    assert "still covers the element after a click on \u201cReject all\u201d" in outcome.reason
    assert len(handover.ops("act")) == 2 and not handover.ops("retry_step")


def framed_banner(frame_text, *labels):
    """A consent tool's container over #send, its buttons in an iframe of another host."""
    url = "http://shop.test/contact"
    container = {"xpath": LAYER, "text": "", "selector": "#cmp", "frame": "#cmp iframe", "ref": 0}
    buttons = [{**button(label, xpath=f"/html[1]/body[1]/div[1]/button[{n}]"), "ref": n, "closes": LAYER}
               for n, label in enumerate(labels, 1)]
    frames = {"#cmp iframe": {"url": "https://cmp.example/banner", "text": frame_text, "elements": buttons,
                              "selectors": {n: [f"button:nth-of-type({n})"] for n in range(1, len(labels) + 1)}}}
    handover = FakeHandover({url: {"elements": []}}, url, frames=frames, layers={"#send": container},
                            step_ok=lambda handover, **_: not handover.layers["#send"])
    failure = {"type": "timeout", "line": 4, "selector": "#send", "details": {"covered_by": container}}
    return TakeoverContext(task_id="t", prompt="", code=SEND, failure=failure, stored_fingerprint=None), handover


def test_a_banner_drawn_in_a_frame_is_closed_with_a_button_inside_the_frame():
    context, handover = framed_banner("We and our partners use cookies.", "Accept all", "Reject all")

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert handover.ops("act") == [{"action": "click", "selector": "button:nth-of-type(2)", "frame": "#cmp iframe"}]
    assert (outcome.recovery["frame_selector"], outcome.recovery["frame_url"]) == ("#cmp iframe", "https://cmp.example/banner")
    patch = HeuristicAgent().write_patch(code=SEND, recoveries=[outcome.recovery], failure={}, prompt="")
    assert 'page.add_locator_handler(page.frame_locator("#cmp iframe").locator("button:nth-of-type(2)"), ' in patch.code
    assert "\u201cReject all\u201d button (in the frame it is drawn in)" in patch.root_cause


def test_a_framed_layer_not_about_cookies_is_not_answered():
    context, handover = framed_banner("Confirm your order", "OK", "Cancel")

    outcome = HeuristicAgent().take_over(context, handover)

    assert {"frame": "#cmp iframe"} in handover.ops("observe")  # it did look inside the frame
    assert not outcome.recovered and not handover.ops("act")


def test_a_frame_that_is_gone_is_waited_out_like_a_layer_without_a_button():
    context, handover = framed_banner("We use cookies.", "Reject all")
    handover.frames.clear()  # the consent tool closed its frame, or it never loaded

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered
    assert "has no button that closes it and still covers the element" in outcome.reason
    assert handover.ops("wait") and not handover.ops("act")


def test_lines_that_a_login_inserts_move_the_line_of_a_later_handler():
    code = '''def sign_in_area(page, params):
    page.goto(params["base_url"] + "/account")
    page.click("#orders")


def run(page, params):
    sign_in_area(page, params)
    page.goto(params["base_url"] + "/contact")
    page.click("#send")
'''
    login = {"kind": "login", "line": 3, "username_selector": "#u", "password_selector": "#p", "submit_selector": "#s",
             "login_url": "/login"}
    layer = {"kind": "layer", "line": 9, "selector": "#send", "layer": "<div id=consent>", "layer_selector": "#consent",
             "close_selector": "#reject"}

    patch = HeuristicAgent().write_patch(code=code, recoveries=[login, layer], failure={}, prompt="")

    lines = patch.code.splitlines()
    handler = lines.index("def run(page, params):") + 1
    assert lines[handler].startswith('    page.add_locator_handler(page.locator("#consent").locator("#reject")')
    assert lines[handler + 1:] == code.splitlines()[6:]
    assert "on line 9" in patch.root_cause


def test_a_close_link_to_hash_closes_the_layer_without_counting_as_leaving_the_page():
    url = "http://shop.test/contact"
    close = {**button("Close"), "tag": "A", "href": "#", "ref": 0, "goes_to": url + "#"}
    page = {"elements": [close]}
    handover = FakeHandover({url: page, url + "#": page}, url, selectors={0: ["#consent a"]},
                            step_ok=lambda **_: True)
    layer = {**COOKIES, "selector": "#consent"}
    failure = {"type": "timeout", "line": 3, "selector": "#send", "details": {"covered_by": layer}}
    context = TakeoverContext(task_id="t", prompt="", code=PAGES, failure=failure, stored_fingerprint=None)

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert (outcome.recovery["kind"], outcome.recovery["close_selector"]) == ("layer", "#consent a")


def test_without_a_recorded_element_an_abstention_says_the_step_never_succeeded():
    """A task whose first run meets an already-changed page has only the selector to go on: the reviewer is told."""
    url = "http://shop.test/contact"
    page = {"elements": [
        {"tag": "LABEL", "text": "Email", "xpath": "/html[1]/body[1]/form[1]/label[1]", "ref": 0},
        {**button("Send message", xpath="/html[1]/body[1]/form[1]/button[1]", id="send-message"), "ref": 1},
    ]}
    failure = {"type": "element_not_found", "line": 4, "selector": "#submit", "action": "click"}
    context = TakeoverContext(task_id="t", prompt="", code=SEND, failure=failure, stored_fingerprint=None)

    outcome = HeuristicAgent().take_over(context, FakeHandover({url: page}, url))

    assert not outcome.recovered
    assert outcome.reason.startswith("locator abstained: ")
    assert "this step has never succeeded" in outcome.reason and "the selector #submit is all there is" in outcome.reason


def test_a_run_stopped_during_the_back_off_of_a_transient_error_is_not_retried():
    """A cancel (or the hand-over's deadline) ends the back-off at once instead of after 5 s of waiting."""
    import threading
    import time

    handover = FakeHandover({"http://shop.test/cart": {"elements": []}}, "http://shop.test/cart", step_ok=lambda **_: True)
    handover.stopped = threading.Event()
    threading.Timer(0.2, handover.stopped.set).start()
    failure = {"type": "navigation_error", "http_status": 503, "url": "http://shop.test/cart", "line": 2}
    context = TakeoverContext(
        task_id="t", prompt="", code="", failure=failure, stored_fingerprint=None, allowed_hosts=["shop.test"]
    )

    started = time.monotonic()
    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered and outcome.reason == "the run was stopped during the retries"
    assert time.monotonic() - started < sum(heuristic.NAVIGATION_RETRY_DELAYS_S) / 2
    assert not [op for op, _ in handover.calls if op == "retry_step"]


def test_the_note_on_rejected_elements_names_them_and_agrees_in_number():
    send = {"tag": "BUTTON", "text": "Send message"}
    icon = {"tag": "BUTTON", "id": "go"}
    one = heuristic._left_out_note([send])
    assert one == (" (the button \u201cSend message\u201d was left out: a reviewer rejected it for this step before; "
                   "if the reviewer was wrong, put its selector in the task's code)")
    many = heuristic._left_out_note([send, icon, {"tag": "SPAN"}, send, send])
    assert many.startswith(" (the button \u201cSend message\u201d, the button #go, a span and 2 more were left out: "
                           "reviewers rejected them")


COUNTRY = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.select_option("#country", "DE")
'''


def renamed_option(options_now: list[list[str]]) -> tuple[TakeoverContext, FakeHandover]:
    """`select_option("#country", "DE")` timed out: the select now offers `options_now`; last time "DE" was Germany."""
    url = "http://shop.test/contact"
    handover = FakeHandover({url: {"elements": [{"tag": "SELECT", "id": "country", "ref": 0}]}}, url,
                            selectors={0: ["#country"]})
    failure = {"type": "timeout", "line": 3, "action": "select_option", "selector": "#country", "args": {"value": "DE"},
               "details": {"match_count": 1, "match_visible": True, "options": options_now}}
    then = {"tag": "SELECT", "id": "country", "options": [["FR", "France"], ["DE", "Germany"]]}
    return TakeoverContext(task_id="t", prompt="", code=COUNTRY, failure=failure, stored_fingerprint=then), handover


def test_an_option_whose_value_was_renamed_is_chosen_again_by_the_label_it_had():
    context, handover = renamed_option([["fr-FR", "France"], ["de-DE", "Germany"]])

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert handover.ops("act") == [{"action": "select", "selector": "#country", "value": {"label": "Germany"}}]
    assert outcome.recovery == {"kind": "option", "line": 3, "selector": "#country", "old_value": "DE",
                                "new_value": "de-DE", "label": "Germany"}
    patch = HeuristicAgent().write_patch(code=COUNTRY, recoveries=[outcome.recovery], failure={}, prompt="")
    assert patch.code.splitlines()[2] == '    page.select_option("#country", label="Germany")'
    assert "\u201cGermany\u201d of `#country` on line 3 now has the value \u201cde-DE\u201d instead of \u201cDE\u201d" in patch.root_cause


@pytest.mark.parametrize("options_now", [
    [["de-DE", "Germany"], ["de-AT", "Germany"]],  # two options read the same: not ours to pick one
    [["fr-FR", "France"], ["deu", "Deutschland"]],  # the label changed too: nothing says which it is
    [["DE", "Germany (EU)"], ["FR", "France"]],  # the value is still there: the select waits for something else
])
def test_an_option_is_not_guessed_when_its_label_does_not_name_one_new_option(options_now):
    context, handover = renamed_option(options_now)

    outcome = HeuristicAgent().take_over(context, handover)

    assert handover.ops("act") == []
    assert not outcome.recovered and (outcome.recovery or {}).get("kind") != "option"


NAME_FIELD = {"tag": "INPUT", "id": "name", "name": "name", "type": "text", "role": "textbox", "neighbor_text": "Name",
              "name_text": "Name", "xpath": "/html[1]/body[1]/form[1]/input[1]", "x": 60, "y": 70, "width": 180,
              "height": 20, "is_button": "no"}
FILL_NAME = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
'''


def form_in_frames(frames: dict[str, str]):
    """The contact page without its form, and iframes (selector -> address) that each show the form."""
    url = "http://shop.test/contact"
    heading = {"tag": "H1", "text": "Contact", "xpath": "/html[1]/body[1]/h1[1]", "x": 8, "y": 8, "ref": 0}
    page = {"elements": [heading], "frames": [{"selector": s, "url": u, "title": ""} for s, u in frames.items()]}
    inside = {s: {"url": u, "elements": [{**NAME_FIELD, "ref": 0}], "selectors": {0: ["role=textbox", "#name"]}}
              for s, u in frames.items()}
    handover = FakeHandover({url: page}, url, frames=inside, step_ok=lambda selector=None, **_: bool(selector))
    failure = {"type": "element_not_found", "line": 3, "selector": "#name", "action": "fill"}
    context = TakeoverContext(task_id="t", prompt="", code=FILL_NAME, failure=failure, stored_fingerprint=NAME_FIELD)
    return context, handover


def test_a_field_moved_into_a_frame_of_the_sites_own_is_filled_there_with_its_own_selector():
    context, handover = form_in_frames({"#contact-form": "http://shop.test/contact-form"})

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert handover.ops("retry_step") == [{"selector": "#contact-form >> internal:control=enter-frame >> #name"}]
    assert (outcome.recovery["kind"], outcome.recovery["selector_kind"]) == ("frame", "original")
    patch = HeuristicAgent().write_patch(code=FILL_NAME, recoveries=[outcome.recovery], failure={}, prompt="")
    assert 'page.frame_locator("#contact-form").locator("#name").fill(params["name"])' in patch.code
    assert patch.root_cause == ("`#name` on line 3 no longer matches: the element is now inside the frame "
                                "`#contact-form`, unchanged; the new version looks for it in there.")


def test_a_frame_of_another_site_is_not_searched():
    # A payment provider's or a map's frame is another site's page: the task's data is not typed into it.
    context, handover = form_in_frames({"#widget": "https://widgets.example/form"})

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered and {"frame": "#widget"} not in handover.ops("observe")
    assert not any("selector" in retry for retry in handover.ops("retry_step"))  # only the wait for a slow page


def test_a_frame_whose_address_redirected_it_to_another_site_is_not_searched_further():
    context, handover = form_in_frames({"#contact-form": "http://shop.test/contact-form"})
    handover.frames["#contact-form"]["url"] = "https://forms.example/contact"

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered and not any("selector" in retry for retry in handover.ops("retry_step"))
    assert any("https://forms.example/contact, another site" in (step.get("why") or "") for step in outcome.trace)


SEND_BUTTON = {"tag": "BUTTON", "id": "submit", "type": "submit", "role": "button", "text": "Send", "is_button": "yes",
               "xpath": "/html[1]/body[1]/form[1]/button[1]", "x": 60, "y": 100, "width": 50, "height": 20}


def test_a_frame_is_not_searched_while_the_page_still_shows_a_later_step_of_the_fields_form():
    # The Name field was removed from the contact form, which stays on the page with its Send button; the frame
    # is the site's newsletter sign-up, whose Name field looks the same.
    context, handover = form_in_frames({"#newsletter": "http://shop.test/newsletter-form"})
    handover.pages[handover.url]["elements"].append({**SEND_BUTTON, "ref": 1})
    context.later_elements = [SEND_BUTTON]

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered and {"frame": "#newsletter"} not in handover.ops("observe")
    assert any((step.get("why") or "").startswith("the form is still on the page") for step in outcome.trace)


def test_a_later_step_of_another_form_on_the_page_does_not_keep_the_frame_from_being_searched():
    context, handover = form_in_frames({"#contact-form": "http://shop.test/contact-form"})
    search = {**SEND_BUTTON, "id": "search", "text": "Search", "xpath": "/html[1]/body[1]/header[1]/form[1]/button[1]"}
    handover.pages[handover.url]["elements"].append({**search, "ref": 1})
    context.later_elements = [search]

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered and outcome.recovery["frame_selector"] == "#contact-form", outcome.reason


def test_a_field_in_two_frames_is_chosen_in_neither():
    context, handover = form_in_frames({"#contact-form": "http://shop.test/contact-form",
                                        "#support-form": "http://shop.test/support-form"})

    outcome = HeuristicAgent().take_over(context, handover)

    assert not any("selector" in retry for retry in handover.ops("retry_step"))
    assert {"frame": "#support-form"} in handover.ops("observe")
    assert any(step.get("why") == "2 frames hold an element like it: none is chosen" for step in outcome.trace)


COUNTRY_SELECT = {"tag": "SELECT", "id": "country", "name": "country", "neighbor_text": "Country", "role": "combobox",
                  "options": [["FR", "France"], ["DE", "Germany"]], "xpath": "/html[1]/body[1]/form[1]/select[1]"}
CHOOSE_COUNTRY = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.select_option("#country", "DE")
'''


def custom_selects(*names: str):
    """The contact page with its country select gone and, in its place, drop-down buttons called `names`."""
    url = "http://shop.test/contact"
    openers = [{"tag": "BUTTON", "role": "button", "haspopup": "listbox", "name_text": f"{name} Choose\u2026",
                "text": "Choose\u2026", "visible": True, "enabled": True, "ref": n, "xpath": f"/html[1]/body[1]/button[{n + 1}]"}
               for n, name in enumerate(names)]
    option = {"tag": "LI", "role": "option", "text": "Germany", "visible": False, "ref": 9}  # in a closed list
    selectors = {**{n: [f"#dropdown-{n}"] for n in range(len(names))}, 9: ['role=option[name="Germany"s]']}
    handover = FakeHandover({url: {"elements": [*openers, option]}}, url, selectors=selectors, step_ok=lambda **_: False)
    failure = {"type": "element_not_found", "line": 3, "selector": "#country", "action": "select_option", "args": {"value": "DE"}}
    context = TakeoverContext(task_id="t", prompt="", code=CHOOSE_COUNTRY, failure=failure, stored_fingerprint=COUNTRY_SELECT)
    return context, handover


def test_a_select_redone_as_a_drop_down_is_opened_and_its_option_clicked_by_the_label_the_value_had():
    context, handover = custom_selects("Language", "Country")

    outcome = HeuristicAgent().take_over(context, handover)

    assert outcome.recovered, outcome.reason
    assert handover.ops("act") == [{"action": "click", "selector": "#dropdown-1"},
                                   {"action": "click", "selector": 'role=option[name="Germany"s]'}]
    patch = HeuristicAgent().write_patch(code=CHOOSE_COUNTRY, recoveries=[outcome.recovery], failure={}, prompt="")
    assert patch.code.splitlines()[2:] == ['    page.click("#dropdown-1")', "    page.click('role=option[name=\"Germany\"s]')"]


@pytest.mark.parametrize("names", [("Language",), ("Country", "Country of birth")])
def test_a_drop_down_is_not_taken_for_the_select_unless_it_alone_reads_like_it(names):
    context, handover = custom_selects(*names)

    outcome = HeuristicAgent().take_over(context, handover)

    assert not outcome.recovered and not handover.ops("act")


@pytest.mark.parametrize(("how", "told"), [
    ("hover", "is now in the \u201cProducts\u201d menu, hidden until that is hovered; the new version hovers over"),
    ("click", "is now hidden until \u201cProducts\u201d is clicked (a menu, tab, panel, dialog or form step it opens); the new "
              "version clicks"),
])
def test_what_a_click_opens_is_not_called_a_menu_in_the_root_cause(how, told):
    opened = {"kind": "menu", "line": 4, "selector": "#send", "opener_selector": "#products", "opener_text": "Products",
              "how": how}
    patch = HeuristicAgent().write_patch(code=SEND, recoveries=[opened], failure={}, prompt="")
    assert f"`#send` on line 4 {told} `#products` first." == patch.root_cause


def test_root_cause_names_a_new_type_or_tag_of_the_element():
    retyped = describe_selector_change({
        "line": 3, "old_selector": "input[type='text'][name='email']", "new_selector": "#email",
        "before": {"tag": "INPUT", "id": "email", "type": "text"}, "after": {"tag": "INPUT", "id": "email", "type": "email"},
    })
    assert "no longer matches: its type changed from \u201ctext\u201d to \u201cemail\u201d." in retyped
    redone = describe_selector_change({
        "line": 3, "old_selector": "button#checkout", "new_selector": 'role=link[name="Checkout"s]',
        "before": {"tag": "BUTTON", "id": "checkout", "text": "Checkout"}, "after": {"tag": "A", "text": "Checkout"},
    })
    assert "no longer matches: its tag changed from <button> to <a>; its id \u201ccheckout\u201d was removed." in redone


PAGE_URL = "https://shop.example.com/catalog"


@pytest.mark.parametrize("element, loads_more", [
    ({"tag": "BUTTON", "text": "Load more"}, True),
    ({"tag": "BUTTON", "name_text": "Show more products"}, True),
    ({"tag": "A", "text": "See more", "href": "#"}, True),
    ({"tag": "A", "text": "See more", "href": "javascript:void(0)"}, True),
    ({"tag": "A", "text": "See more", "href": "/catalog?page=2"}, False),  # another page: pagination
    ({"tag": "A", "text": "Load more", "href": "https://shop.example.com/catalog/2"}, False),
    ({"tag": "BUTTON", "text": "Load more", "enabled": False}, False),
    ({"tag": "BUTTON", "text": "More"}, False),
    ({"tag": "SPAN", "text": "Load more"}, False),
])
def test_a_load_more_control_is_a_button_on_show_named_so_and_never_a_link_to_another_page(element, loads_more):
    assert _loads_more(element, PAGE_URL) is loads_more


CONTACT_FORM = {"xpath": "/html[1]/body[1]/form[2]", "id": "contact", "name": "", "action": "/thanks"}
NEWSLETTER_FORM = {"xpath": "/html[1]/body[1]/form[1]", "id": "", "name": "", "action": "/newsletter"}
SCRIPT_FORMS = [{**NEWSLETTER_FORM, "action": ""}, {**CONTACT_FORM, "id": "", "action": ""}]
RECORDED_IN_FIRST_FORM = {"xpath": "/html[1]/body[1]/form[1]/button[1]", "form_xpath": "/html[1]/body[1]/form[1]"}


@pytest.mark.parametrize("recorded, forms, by_place, told", [
    # A newsletter form was added above the step's: it now has the step's old place.
    ({"form_action": "/thanks"}, [NEWSLETTER_FORM, CONTACT_FORM], False, CONTACT_FORM["xpath"]),
    ({"form_id": "contact", "form_action": "/elsewhere"}, [NEWSLETTER_FORM, CONTACT_FORM], False, CONTACT_FORM["xpath"]),
    ({"form_action": ""}, SCRIPT_FORMS, False, None),  # forms that post nowhere are not told apart by that
    ({}, [NEWSLETTER_FORM, CONTACT_FORM], False, None),  # recorded before forms were told apart...
    ({}, [NEWSLETTER_FORM, CONTACT_FORM], True, NEWSLETTER_FORM["xpath"]),  # ...only a refusal goes by the place
])
def test_the_steps_form_is_told_by_id_name_or_action_and_by_its_place_only_where_that_refuses(recorded, forms, by_place, told):
    assert _the_steps_form({**RECORDED_IN_FIRST_FORM, **recorded}, {"forms": forms}, by_place=by_place) == told
