"""Unit tests for the heuristic agent's pure helpers (the browser-driven paths are in test_heal_e2e.py)."""

import pytest

from healing_app.agents.heuristic import (
    _link_sources,
    _login_form,
    _rank_links,
    describe_selector_change,
)


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
