"""Heal realistic site changes end to end and count what heals, what abstains, and what is wrongly "fixed".

    python bench/heal_scenarios.py [--only NAME ...] [--agent heuristic|llm]

Each scenario is a small local site in a before and an after version, and a task that works on the
before version. The bench runs the task on "before" (so its element fingerprints are stored), switches
the site to "after", runs it again with healing on and auto-deploy, and reads the healing event:

  healed      the run healed, the new version validated, and its output is the expected one
  refused     nothing was deployed where nothing should be (abstained, captcha, removed element)
  wrong       something was deployed that should not have been, or with the wrong output, or the takeover
              posted to a page it must never post to (a look-alike's form) whatever came of it (target: 0)
  missed      a heal that should have worked did not

It uses a throw-away SQLite database and Redis database 8, the product's own worker class in-process,
and real Chromium. Times: failure → healed action (the takeover), and failure → validated version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healing_app.tests.pages import NAME_FIELD  # noqa: E402 - the repository is on the path from here on


@dataclass
class Scenario:
    name: str
    change: str
    code: str
    before: dict
    after: dict
    expect: str  # "heal" or "refuse"
    output: object = None
    secrets: dict = field(default_factory=dict)
    never_post: tuple = ()  # paths a heal must never post to (another form's action), refused or not
    trigger_on: tuple = ("timeout", "element_not_found", "navigation_error", "authentication_failure", "captcha_detected")


def _form(button: str, extra: str = "", fields: str = "") -> str:
    fields = fields or '<label for="name">Name</label><input id="name" name="name">'
    return (
        f'<html><body><h1>Contact</h1>{extra}<form method="post" action="/thanks">{fields}'
        f'<button type="reset" class="btn">Clear</button>{button}</form></body></html>'
    )


def _thanks(request) -> str:
    return f'<p class="confirmation">Thanks, {request.form.get("name")}!</p>'


def _layer(content: str, layer_id: str = "layer", z_index: int = 9) -> str:
    """A layer over the whole page, as consent tools and pop-ups draw them."""
    return (f'<div id="{layer_id}" style="position:fixed;inset:0;z-index:{z_index};background:rgba(0,0,0,.4)">'
            f'<div>{content}</div></div>')


def _closes(layer_id: str = "layer") -> str:
    return f"onclick=\"document.getElementById('{layer_id}').remove()\""


CLOSES = _closes()

# A web component whose button submits the form around it (shadow DOM buttons do not, by themselves).
SHOP_BUY_COMPONENT = (
    "<script>customElements.define('shop-buy', class extends HTMLElement { connectedCallback() {"
    " const root = this.attachShadow({mode: 'open'}); root.innerHTML = '<button class=\"buy\">Buy</button>';"
    " root.querySelector('button').onclick = () => this.closest('form').submit(); } });</script>"
)

def _consent_in_a_frame(request) -> str:
    """The contact form under a consent tool's container, as Sourcepoint draws it: generated ids, the banner an
    iframe of another origin (localhost for 127.0.0.1) known by its title, which asks the page by postMessage to
    close; the container fades out before it goes."""
    frame_url = "http://" + request.headers["Host"].replace("127.0.0.1", "localhost") + "/consent-frame"
    container = (
        '<div id="sp_message_container_1047213" style="position:fixed;inset:0;z-index:9;background:rgba(0,0,0,.4);'
        'transition:opacity .4s">'
        f'<iframe id="sp_message_iframe_1047213" title="SP Consent Message" src="{frame_url}" '
        'style="width:100%;height:100%;border:0"></iframe></div>'
        "<script>addEventListener('message', (e) => { if (e.data !== 'sp.close') return;"
        " const c = document.getElementById('sp_message_container_1047213'); c.style.opacity = 0;"
        " setTimeout(() => c.remove(), 400); });</script>"
    )
    return _form(V1_BUTTON, extra=container)


CONSENT_FRAME = (
    '<div class="message-container"><p>We and our partners store and access information on your device, such as'
    ' cookies, to personalise content and ads.</p>'
    + "".join(f'<button title="{label}" class="message-component message-button {kind}" '
              f'onclick="parent.postMessage(\'sp.close\', \'*\')">{label}</button>'
              for label, kind in (("Manage options", "sp_choice_type_12"), ("Accept", "sp_choice_type_11"),
                                  ("Reject", "sp_choice_type_13")))
    + '</div>'
)

FORM_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", "Ada")
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''
THANKS = {"confirmation": "Thanks, Ada!"}
V1_BUTTON = '<button id="submit" type="submit" class="btn primary">Send</button>'
NEWSLETTER_FORM = ('<form method="post" action="/newsletter"><input id="nl" name="nl">'
                   '<button id="newsletter-send" type="submit" class="btn primary">Send</button></form>')


def scenarios() -> list[Scenario]:
    from healing_app.tests.pages import PRICE_15_CODE, catalog, more_products, two_steps
    from tasks_app.tests.sites import Response, redirect

    late = Response(
        "setTimeout(() => { document.getElementById('out').innerHTML = '<div id=\"total\">42</div>'; }, 6500);",
        content_type="application/javascript",
    )

    def account(request):
        if "session=ok" in request.headers.get("Cookie", ""):
            return '<h1>Account</h1><p id="balance">100.00</p>'
        return redirect("/login")

    def login(request):
        if request.method == "POST" and request.form.get("user") == "ada@example.com" and request.form.get("pass") == "pw-123456":
            return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ok; Path=/"})
        return ('<form method="post" action="/login"><label for="u">Email</label><input id="u" name="user" type="email">'
                '<label for="p">Password</label><input id="p" name="pass" type="password">'
                '<button type="submit">Sign in</button></form>')

    def account_behind_auth(request):
        cookie = request.headers.get("Cookie", "")
        if "session=ok" in cookie or "session=new" in cookie:
            return f'<h1>Account</h1><p id="balance">{"100.00" if "session=ok" in cookie else "0.00"}</p>'
        return redirect("/auth?next=/account")

    def sign_in(request):
        if request.form.get("email") == "ada@example.com" and request.form.get("password") == "pw-123456":
            return Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=ok; Path=/"})
        return redirect("/auth")

    two_step_login = (
        '<form method="post" action="/session"><div id="step1"><label for="e">Email</label><input id="e" name="email" type="email">'
        '<button type="button" onclick="step1.hidden = true; step2.hidden = false">Next</button></div>'
        '<div id="step2" hidden><label for="pw">Password</label><input id="pw" name="password" type="password">'
        '<button type="submit">Sign in</button></div></form>'
    )
    sign_up = Response("", status=302, headers={"Location": "/account", "Set-Cookie": "session=new; Path=/"})
    auth = ('<h2>New here? Create an account</h2><form method="post" action="/register">'
            '<label for="r-email">Email</label><input id="r-email" name="email" type="email">'
            '<label for="r-pass">Choose a password</label><input id="r-pass" name="password" type="password">'
            '<button type="submit">Create account</button></form>'
            '<h2>Already a customer?</h2><form method="post" action="/session">'
            '<label for="s-email">Email</label><input id="s-email" name="email" type="email">'
            '<label for="s-pass">Password</label><input id="s-pass" name="password" type="password">'
            '<button type="submit">Sign in</button></form>')
    invoices = "<table><tr><td>INV-1</td><td>12.00</td></tr></table>"
    guide = '<h1>Guide</h1><code id="install">pip install anchor==2.0</code>'
    report = ('<table class="report-table"><tr><th>{0}</th><th>Orders</th><th>Revenue</th></tr>'
              "<tr><td>{1}</td><td>{2}</td><td>{3}</td></tr></table>")

    shop = lambda button: (  # noqa: E731
        '<html><body><h1>Mug</h1><p class="price">12.00</p>'
        f'<form method="post" action="/cart">{button}</form></body></html>'
    )
    cart = lambda request: '<p class="cart-count">1 item</p>'  # noqa: E731
    buy_code = '''def run(page, params):
    page.goto(params["base_url"] + "/item")
    page.click('[data-testid="buy"]')
    return {"cart": page.inner_text(".cart-count")}
'''
    return [
        Scenario("renamed id", "button #submit → #send-message", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<button id="send-message" type="submit" class="btn primary">Send</button>'), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("reworded button", "id removed, text Send → Send message, new test id", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<button type="submit" class="btn primary cta" data-testid="send">Send message</button>'), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("restructured form", "fields wrapped in fieldsets, button id renamed", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<div class="actions"><button id="contact-submit" type="submit" class="btn primary">Send</button></div>',
                                    fields='<fieldset><legend>You</legend><label for="name">Name</label><input id="name" name="name"></fieldset>'),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("moved element", "button moved above the fields and renamed", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": '<html><body><h1>Contact</h1><form method="post" action="/thanks">'
                              '<button id="go" type="submit" class="btn primary">Send</button>'
                              '<label for="name">Name</label><input id="name" name="name"></form></body></html>',
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("look-alike decoy", "real button removed; a newsletter 'Send' button nearby", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("", extra=NEWSLETTER_FORM), "/thanks": _thanks, "/newsletter": "<p>Subscribed</p>"},
                 "refuse", never_post=("/newsletter",)),
        Scenario("form added above", "a newsletter form now comes first (the contact form is the second <form>); "
                 "the button's id changed", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON.replace('id="submit"', 'id="send-it"'), extra=NEWSLETTER_FORM),
                  "/thanks": _thanks, "/newsletter": "<p>Subscribed</p>"},
                 "heal", THANKS, never_post=("/newsletter",)),
        Scenario("removed element", "the button is gone, nothing like it remains", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("") .replace('<button type="reset" class="btn">Clear</button>', ""), "/thanks": _thanks},
                 "refuse"),
        Scenario("duplicated button", "the button loses its id and appears twice in the form (both submit it)", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<button type="submit" class="btn primary">Send</button><button type="submit" class="btn primary">Send</button>'),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("look-alike in another form", "the button vanished; two equally similar 'Send' buttons in other forms", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("", extra='<form method="post" action="/a"><button type="submit" class="btn primary">Send</button></form>'
                                               '<form method="post" action="/b"><button type="submit" class="btn primary">Send</button></form>'),
                  "/thanks": _thanks, "/a": "<p>A</p>", "/b": "<p>B</p>"},
                 "refuse"),
        Scenario("renamed test id", 'data-testid buy → add-to-cart, text Buy → Add to cart', buy_code,
                 {"/item": shop('<button data-testid="buy" class="buy">Buy</button>'), "/cart": cart},
                 {"/item": shop('<button data-testid="add-to-cart" class="buy primary">Add to cart</button>'), "/cart": cart},
                 "heal", {"cart": "1 item"}),
        Scenario("into a web component", "the Buy button now lives in a <shop-buy> element's shadow root", buy_code,
                 {"/item": shop('<button data-testid="buy" class="buy">Buy</button>'), "/cart": cart},
                 {"/item": shop('<shop-buy></shop-buy>') + SHOP_BUY_COMPONENT, "/cart": cart},
                 "heal", {"cart": "1 item"}),
        Scenario("renamed class", ".price → .product-price", '''def run(page, params):
    page.goto(params["base_url"] + "/item")
    return {"price": page.inner_text(".price")}
''',
                 {"/item": '<h1>Mug</h1><p class="price">12.00</p><p class="stock">In stock</p>'},
                 {"/item": '<h1>Mug</h1><p class="product-price">12.00</p><p class="stock">In stock</p>'},
                 "heal", {"price": "12.00"}),
        Scenario("slow page", "the total appears after 6.5 s (timeout 5 s)", '''def run(page, params):
    page.goto(params["base_url"] + "/report")
    return {"total": page.inner_text("#total")}
''',
                 {"/report": '<div id="total">42</div>'},
                 {"/report": '<div id="out"></div><script src="/late.js"></script>', "/late.js": late},
                 "heal", {"total": "42"}),
        Scenario("moved URL", "/catalog → /products, linked from the home page", '''def run(page, params):
    page.goto(params["base_url"] + "/catalog")
    return {"products": page.inner_text(".products")}
''',
                 {"/": '<a href="/catalog">Catalog</a>', "/catalog": '<ul class="products"><li>Mug 12.00</li></ul>'},
                 {"/": '<a href="/products">Our products</a> <a href="/about">About</a>', "/products": '<ul class="products"><li>Mug 12.00</li></ul>'},
                 "heal", {"products": "Mug 12.00"}),
        Scenario("new login wall", "/account now redirects to a login form", '''def run(page, params):
    page.goto(params["base_url"] + "/account")
    return {"balance": page.inner_text("#balance")}
''',
                 {"/account": '<h1>Account</h1><p id="balance">100.00</p>', "/login": login},
                 {"/account": account, "/login": login},
                 "heal", {"balance": "100.00"}, secrets={"username": "ada@example.com", "password": "pw-123456"}),
        Scenario("login wall, sign-up first", "/account redirects to /auth, whose first form creates an account", '''def run(page, params):
    page.goto(params["base_url"] + "/account")
    return {"balance": page.inner_text("#balance")}
''',
                 {"/account": '<h1>Account</h1><p id="balance">100.00</p>'},
                 {"/account": account_behind_auth, "/auth": auth, "/register": sign_up, "/session": sign_in},
                 "heal", {"balance": "100.00"}, secrets={"username": "ada@example.com", "password": "pw-123456"}),
        Scenario("two-step login wall", "/account redirects to a login that asks for the email, then (Next) the password", '''def run(page, params):
    page.goto(params["base_url"] + "/account")
    return {"balance": page.inner_text("#balance")}
''',
                 {"/account": '<h1>Account</h1><p id="balance">100.00</p>'},
                 {"/account": account_behind_auth, "/auth": two_step_login, "/session": sign_in},
                 "heal", {"balance": "100.00"}, secrets={"username": "ada@example.com", "password": "pw-123456"}),
        Scenario("moved URL, look-alike", "/invoices → /billing; a help page /help/invoices has a table too", '''def run(page, params):
    page.goto(params["base_url"] + "/invoices")
    return {"invoices": page.inner_text("table")}
''',
                 {"/": '<a href="/invoices">Invoices</a>', "/invoices": invoices},
                 {"/": '<nav><a href="/billing">Billing</a> <a href="/help/invoices">Invoice questions</a></nav>',
                  "/billing": invoices,
                  "/help/invoices": "<h1>Invoice FAQ</h1><table><tr><td>When are invoices sent?</td><td>Monthly</td></tr></table>"},
                 "heal", {"invoices": "INV-1\t12.00"}),
        Scenario("moved URL, archived decoy", "/docs/v1/guide → /docs/v2/guide; /docs/v1/guide-old (an old release) is named closer",
                 '''def run(page, params):
    page.goto(params["base_url"] + "/docs/v1/guide")
    return {"install": page.inner_text("#install")}
''',
                 {"/": '<a href="/docs/v1/guide">Guide</a>', "/docs/v1/guide": guide},
                 {"/": '<a href="/docs/v1/guide-old">Guide (v1, archived)</a> <a href="/docs/v2/guide">Guide</a>',
                  "/docs/v1/guide-old": '<h1>Guide (archived)</h1><code id="install">pip install anchor==1.4</code>',
                  "/docs/v2/guide": guide},
                 "heal", {"install": "pip install anchor==2.0"}),
        Scenario("removed page", "/reports/weekly is gone; /reports/monthly has the same table template", '''def run(page, params):
    page.goto(params["base_url"] + "/reports/weekly")
    return {"report": page.inner_text(".report-table")}
''',
                 {"/": '<a href="/reports/weekly">Weekly report</a>', "/reports/weekly": report.format("Week", "2024-W12", "340", "4,210.00")},
                 {"/": '<a href="/reports">Reports</a> <a href="/reports/monthly">Monthly report</a>', "/reports": "<h1>Reports</h1>",
                  "/reports/monthly": report.format("Month", "2024-03", "1,420", "17,880.00")},
                 "refuse"),
        Scenario("captcha", "a reCAPTCHA challenge appears", '''def run(page, params):
    page.goto(params["base_url"] + "/catalog")
    return {"products": page.inner_text(".products")}
''',
                 {"/catalog": '<ul class="products"><li>Mug</li></ul>'},
                 {"/catalog": '<div class="g-recaptcha" data-sitekey="x"></div><p>Verify you are human</p>'},
                 "refuse"),
        Scenario("cookie banner", "a consent layer now covers the page (Accept all / Reject all / privacy link)", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, extra=_layer('<p>We use cookies.</p><a href="/privacy">Privacy policy</a>'
                                                            f'<button {CLOSES}>Accept all</button><button {CLOSES}>Reject all</button>')),
                  "/thanks": _thanks, "/privacy": "<h1>Privacy</h1>"},
                 "heal", THANKS),
        Scenario("redesign with a cookie banner", "button #submit → #send-message, and a consent layer over the page", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<button id="send-message" type="submit" class="btn primary">Send</button>',
                                    extra=_layer(f'<p>We use cookies.</p><button {CLOSES}>Accept all</button>')),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("newsletter pop-up", "a modal offers the newsletter; its only way out is a \u00d7 button", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, extra=_layer('<h2>Get 10% off</h2><input placeholder="Email">'
                                                            f'<button>Subscribe</button><button aria-label="Close" {CLOSES}>\u00d7</button>')),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("pop-up over a cookie banner", "a newsletter modal (\u00d7) drawn over a consent layer (Reject all)", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, extra=_layer(f'<p>We use cookies.</p><button {_closes("consent")}>Reject all</button>', "consent")
                                    + _layer(f'<h2>Get 10% off</h2><button aria-label="Close" {_closes("newsletter")}>\u00d7</button>',
                                             "newsletter", 10)),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("cookie banner in a frame", "a consent tool's banner, an iframe of another origin, covers the page", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _consent_in_a_frame, "/consent-frame": CONSENT_FRAME, "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("age gate", "a modal asks \u201cAre you 18 or older?\u201d (Yes / No): not the agent's to answer", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, extra=_layer(f'<p>Are you 18 or older?</p><button {CLOSES}>Yes</button>'
                                                            f'<button {CLOSES}>No</button>')),
                  "/thanks": _thanks},
                 "refuse"),
        Scenario("changed link text", 'get_by_text("Catalog") → link now says "Shop"', '''def run(page, params):
    page.goto(params["base_url"] + "/")
    page.get_by_text("Catalog").click()
    return {"products": page.inner_text(".products")}
''',
                 {"/": '<nav><a href="/catalog">Catalog</a> <a href="/about">About</a></nav>', "/catalog": '<ul class="products"><li>Mug</li></ul>'},
                 {"/": '<nav><a href="/catalog">Shop</a> <a href="/about">About</a></nav>', "/catalog": '<ul class="products"><li>Mug</li></ul>'},
                 "heal", {"products": "Mug"}),
        Scenario("moved into a drop-down", "the nav's Pricing link moved into a Products menu that opens on hover", PRICING_CODE,
                 {"/": '<nav><a id="nav-pricing" href="/pricing">Pricing</a> <a href="/about">About</a></nav>', "/pricing": PLANS},
                 {"/": "<style>.dropdown ul{display:none} .dropdown:hover ul{display:block}</style>"
                       '<nav><ul><li class="dropdown"><a href="/products">Products</a><ul><li><a id="menu-pricing" '
                       'href="/pricing">Pricing</a></li><li><a href="/features">Features</a></li></ul></li>'
                       '<li><a href="/about">About</a></li></ul></nav>', "/pricing": PLANS},
                 "heal", {"plans": "Plans and pricing"}),
        Scenario("behind a More button", "the nav collapsed into a “More” menu button (same link, now hidden)", PRICING_CODE,
                 {"/": '<nav><a id="nav-pricing" href="/pricing">Pricing</a> <a href="/about">About</a></nav>', "/pricing": PLANS},
                 {"/": '<nav><button aria-expanded="false" aria-controls="more" onclick="const m = document.getElementById('
                       "'more'); m.hidden = !m.hidden; this.setAttribute('aria-expanded', !m.hidden)\">More</button>"
                       '<ul id="more" hidden><li><a id="nav-pricing" href="/pricing">Pricing</a></li>'
                       '<li><a href="/about">About</a></li></ul></nav>', "/pricing": PLANS},
                 "heal", {"plans": "Plans and pricing"}),
        Scenario("relabelled field", 'get_by_label("Your name") → label "Full name", id renamed', LABEL_CODE,
                 {"/contact": _form(V1_BUTTON, fields='<label for="name">Your name</label><input id="name" name="name">'),
                  "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, fields='<label for="full-name">Full name</label><input id="full-name" name="name">'),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("new placeholder", "the name field's placeholder Your name → Full name", PLACEHOLDER_CODE,
                 {"/contact": _form(V1_BUTTON, fields='<input id="name" name="name" placeholder="Your name">'), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, fields='<input id="name" name="name" placeholder="Full name">'), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("renamed select", "select #country → #country-select", SELECT_CODE,
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _select("country")), "/thanks": _thanks_from},
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _select("country-select")), "/thanks": _thanks_from},
                 "heal", {"confirmation": "Thanks, Ada from DE!"}),
        Scenario("renamed option values", 'option values DE → de-DE, FR → fr-FR (labels kept)', SELECT_CODE,
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _select("country")), "/thanks": _thanks_from},
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _select("country", values=("fr-FR", "de-DE"))),
                  "/thanks": _thanks_from},
                 "heal", {"confirmation": "Thanks, Ada from de-DE!"}),
        Scenario("select became a drop-down", "the country select is now a button that opens a list box", SELECT_CODE,
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _select("country")), "/thanks": _thanks_from},
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + COUNTRY_DROP_DOWN), "/thanks": _thanks_from},
                 "heal", {"confirmation": "Thanks, Ada from DE!"}),
        Scenario("renamed checkbox", "a required checkbox #terms → #accept-terms", CHECKBOX_CODE,
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _terms("terms")), "/thanks": _thanks_if_accepted},
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _terms("accept-terms")), "/thanks": _thanks_if_accepted},
                 "heal", THANKS),
        Scenario("checkbox became a switch", "the terms checkbox is now a toggle switch (a button with role=switch)",
                 CHECKBOX_CODE,
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + _terms("terms")), "/thanks": _thanks_if_accepted},
                 {"/contact": _form(V1_BUTTON, fields=NAME_FIELD + TERMS_SWITCH), "/thanks": _thanks_if_accepted},
                 "heal", THANKS),
        Scenario("reworded text selector", "text=Send → the button says Submit", TEXT_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<button id="submit" type="submit" class="btn primary">Submit</button>'), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("rendered on scroll", "the form's button now renders only once scrolled into view, 3000 px down", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("", fields=NAME_FIELD + RENDERED_ON_SCROLL), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("slow submission", "the form's POST now takes 7 s to answer (the click's timeout is 5 s)", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON), "/thanks": lambda request: Response(_thanks(request), delay=7)},
                 "heal", THANKS),
        Scenario("loading layer", "a loading layer covers the form for 6.5 s (timeout 5 s)", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, extra=LOADING_LAYER), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("slow submission, same address", "a form that posts to its own page now answers in 7 s (timeout 5 s)",
                 FORM_CODE, {"/contact": _answers_in_place(0)}, {"/contact": _answers_in_place(7)}, "heal", THANKS),
        Scenario("moved into a frame", "the form is now a page of its own in an iframe (its confirmation shows there too)",
                 FORM_CODE, {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": FRAMED_FORM, "/contact-form": _form(V1_BUTTON), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("moved into a frame, reworded", "the form moved into an iframe, and Send became Send message (#send-message)",
                 FORM_CODE, {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": FRAMED_FORM, "/thanks": _thanks, "/contact-form": _form(
                     '<button id="send-message" type="submit" class="btn primary">Send message</button>')},
                 "heal", THANKS),
        Scenario("into a second tab", "the Send button (renamed) moved into the form's second tab, hidden until clicked",
                 FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(_tabs("<p>Tell us who you are.</p>", '<button id="send-message" type="submit" '
                                                                        'class="btn primary">Send</button>'),
                                    fields=NAME_FIELD),
                  "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("into an accordion", "the name field (same id) moved into a closed accordion panel", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form(V1_BUTTON, fields=_accordion("About you", NAME_FIELD)), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("into a closed details", "the Send button (renamed) folded into a closed <details> of its form", FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form('<details><summary>Ready? Send it</summary><button id="send-message" type="submit" '
                                    'class="btn primary">Send</button></details>'), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("look-alike in a closed section", "the button is gone; a closed Newsletter <details> has a Send button",
                 FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("").replace("</form>", "</form>" + NEWSLETTER_IN_DETAILS), "/thanks": _thanks,
                  "/newsletter": "<p>Subscribed</p>"},
                 "refuse", never_post=("/newsletter",)),
        Scenario("form split into steps", "the form became two steps: Name, then a Next button shows the Send step",
                 FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": _form("", fields=two_steps(NAME_FIELD, V1_BUTTON)).replace(
                     '<button type="reset" class="btn">Clear</button>', ""), "/thanks": _thanks},
                 "heal", THANKS),
        Scenario("load more", "the list shows 6 products; a Load more button fetches the next 6", PRICE_15_CODE,
                 {"/catalog": catalog(range(1, 16))},
                 {"/catalog": catalog(range(1, 7), load_more=True), "/more": more_products},
                 "heal", {"price": "15.00"}),
        Scenario("into a modal dialog", "the form moved into a <dialog> that a button naming it (data-bs-target) opens",
                 FORM_CODE,
                 {"/contact": _form(V1_BUTTON), "/thanks": _thanks},
                 {"/contact": '<h1>Contact</h1><button type="button" data-bs-toggle="modal" data-bs-target="#write" '
                              "onclick=\"document.getElementById('write').showModal()\">Write to us</button>"
                              '<dialog id="write"><form method="post" action="/thanks">' + NAME_FIELD + V1_BUTTON
                              + "</form></dialog>",
                  "/thanks": _thanks},
                 "heal", THANKS),
    ]


LABEL_CODE = FORM_CODE.replace('page.fill("#name", "Ada")', 'page.get_by_label("Your name").fill("Ada")')
PLACEHOLDER_CODE = FORM_CODE.replace('page.fill("#name"', "page.fill(\"input[placeholder='Your name']\"")
SELECT_CODE = FORM_CODE.replace('    page.click', '    page.select_option("#country", "DE")\n    page.click')
CHECKBOX_CODE = FORM_CODE.replace('    page.click', '    page.check("#terms")\n    page.click')
TEXT_CODE = FORM_CODE.replace('page.click("#submit")', 'page.click("text=Send")')
NEWSLETTER_IN_DETAILS = (
    '<details><summary>Newsletter</summary><form method="post" action="/newsletter"><input id="nl" name="nl">'
    '<button id="newsletter-send" type="submit" class="btn primary">Send</button></form></details>'
)
LOADING_LAYER = ('<div id="loading" style="position:fixed;inset:0;z-index:9;background:rgba(255,255,255,.8)">Loading\u2026</div>'
                 '<script>setTimeout(() => document.getElementById("loading").remove(), 6500)</script>')

FRAMED_FORM = '<h1>Contact</h1><p>Write to us.</p><iframe id="contact-form" title="Contact form" src="/contact-form"></iframe>'

# Below a long text, a placeholder that turns into the Send button once it is scrolled into view.
RENDERED_ON_SCROLL = (
    '<div style="height:3000px">Tell us more below.</div><div id="more"></div>'
    '<template id="button">' + V1_BUTTON + '</template>'
    "<script>new IntersectionObserver((seen, observer) => { if (!seen[0].isIntersecting) return; observer.disconnect();"
    " more.replaceWith(document.getElementById('button').content.cloneNode(true)); }).observe(more);</script>"
)


def _tabs(first: str, second: str) -> str:
    """Two tabs (the WAI-ARIA tabs pattern): the second panel is hidden until its tab is clicked."""
    return (
        '<div role="tablist"><button type="button" role="tab" id="t1" aria-selected="true" aria-controls="p1" '
        'onclick="show(1)">Overview</button><button type="button" role="tab" id="t2" aria-selected="false" '
        'aria-controls="p2" onclick="show(2)">Your details</button></div>'
        f'<div role="tabpanel" id="p1">{first}</div><div role="tabpanel" id="p2" hidden>{second}</div>'
        "<script>function show(n) { for (const i of [1, 2]) { document.getElementById('p' + i).hidden = i !== n;"
        " document.getElementById('t' + i).setAttribute('aria-selected', String(i === n)); } }</script>"
    )


def _accordion(heading: str, content: str) -> str:
    """A closed accordion panel (the WAI-ARIA accordion pattern): its heading's button shows and hides it."""
    return (
        '<h3><button type="button" aria-expanded="false" aria-controls="panel" onclick="const p = '
        "document.getElementById('panel'); p.hidden = !p.hidden; this.setAttribute('aria-expanded', String(!p.hidden))\">"
        f'{heading}</button></h3><div id="panel" role="region" hidden>{content}</div>'
    )


def _select(select_id: str, values: tuple[str, str] = ("FR", "DE")) -> str:
    options = "".join(f'<option value="{value}">{label}</option>' for value, label in zip(values, ("France", "Germany")))
    return f'<label for="{select_id}">Country</label><select id="{select_id}" name="country">{options}</select>'


# The country select redone as design systems draw one: a button that opens a list box, a hidden input for the form.
COUNTRY_DROP_DOWN = (
    '<span id="country-label">Country</span><button type="button" id="country-button" aria-haspopup="listbox" '
    'aria-labelledby="country-label country-button" onclick="document.getElementById(\'country-list\').hidden ^= 1">'
    'Choose</button><ul role="listbox" id="country-list" hidden><li role="option" data-value="FR">France</li>'
    '<li role="option" data-value="DE">Germany</li></ul><input type="hidden" name="country" id="country-value">'
    "<script>for (const o of document.querySelectorAll('[role=option]')) o.onclick = () => {"
    " document.getElementById('country-value').value = o.dataset.value; document.getElementById('country-list').hidden = true; };"
    "</script>"
)


# The terms checkbox redone as a switch: a button that says whether it is on, and a hidden input for the form.
TERMS_SWITCH = (
    '<button type="button" role="switch" id="terms-switch" aria-checked="false" aria-labelledby="terms-label" '
    'onclick="const on = this.getAttribute(\'aria-checked\') !== \'true\'; this.setAttribute(\'aria-checked\', on);'
    ' document.getElementById(\'terms-value\').value = on ? \'yes\' : \'\'"></button>'
    '<span id="terms-label">I accept the terms</span><input type="hidden" name="terms" id="terms-value">'
)


def _terms(checkbox_id: str) -> str:
    return f'<input type="checkbox" id="{checkbox_id}" name="terms" value="yes"><label for="{checkbox_id}">I accept the terms</label>'


def _answers_in_place(delay: float):
    """The contact form posting to its own address, which answers with the confirmation after `delay` seconds."""
    from tasks_app.tests.sites import Response

    def contact(request):
        if request.method != "POST":
            return _form(V1_BUTTON).replace('action="/thanks"', 'action="/contact"')
        return Response(_thanks(request), delay=delay)
    return contact


def _thanks_from(request) -> str:
    return f'<p class="confirmation">Thanks, {request.form.get("name")} from {request.form.get("country")}!</p>'


def _thanks_if_accepted(request) -> str:
    return _thanks(request) if request.form.get("terms") == "yes" else '<p class="error">Please accept the terms.</p>'


PRICING_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/")
    page.click("#nav-pricing")
    return {"plans": page.inner_text("h1")}
'''
PLANS = "<h1>Plans and pricing</h1>"


def setup_django(agent: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="anchor-bench-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        DEBUG="1",
        ANCHOR_VAR_DIR=str(tmp),
        DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
        HEALING_AGENT=agent,
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drain() -> None:
    import django_rq

    from tasks_app.worker import AnchorWorker

    queues = [django_rq.get_queue(name) for name in ("runs", "healing", "webhooks")]
    AnchorWorker(queues, connection=queues[0].connection).work(burst=True, with_scheduler=False, logging_level="WARNING")


def play(scenario: Scenario) -> dict:
    from healing_app.models import HealingEvent
    from tasks_app import services
    from tasks_app.tests.sites import serve

    with serve(scenario.before) as site:
        task = services.task_create(
            name=scenario.name, code=scenario.code, params={"base_url": site.url}, secrets=scenario.secrets,
            self_healing=True, self_healing_config={"auto_deploy": True, "trigger_on": list(scenario.trigger_on)},
        )
        services.run_enqueue(task=task)
        drain()
        site.pages = scenario.after
        run = services.run_enqueue(task=task)
        drain()
    run.refresh_from_db()
    event = HealingEvent.objects.filter(run=run).select_related("validation_run").first()
    deployed = event is not None and event.status == HealingEvent.Status.DEPLOYED
    right_output = deployed and event.validation_run is not None and event.validation_run.output == scenario.output
    if any(site.hits[f"POST {path}"] for path in scenario.never_post):
        verdict = "wrong"
    elif scenario.expect == "heal":
        verdict = "healed" if right_output else ("wrong" if deployed else "missed")
    else:
        verdict = "wrong" if deployed else "refused"
    validated_ms = None
    if deployed:
        deployed_at = next(e["at"] for e in event.timeline if e["status"] == "deployed")
        from datetime import datetime

        validated_ms = (datetime.fromisoformat(deployed_at) - event.created_at).total_seconds() * 1000
    return {
        "name": scenario.name,
        "expect": scenario.expect,
        "verdict": verdict,
        "run": run.status,
        "event": event.status if event else "-",
        "takeover_ms": (event.timings or {}).get("takeover_ms") if event else None,
        "validated_ms": validated_ms,
        "why": ((event.root_cause or event.reason) if event else run.error_message)[:110],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--agent", default="heuristic", choices=("heuristic", "llm"))
    args = parser.parse_args()
    setup_django(args.agent)
    import django_rq

    django_rq.get_connection("runs").flushdb()
    chosen = [s for s in scenarios() if not args.only or s.name in args.only]
    rows = []
    for scenario in chosen:
        started = time.monotonic()
        row = play(scenario)
        rows.append(row)
        print(f"{row['verdict']:8} {row['name']:18} run={row['run']:9} event={row['event']:15} "
              f"{time.monotonic() - started:5.1f}s  {row['why']}", flush=True)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("healed", "refused", "wrong", "missed")}
    should_heal = sum(r["expect"] == "heal" for r in rows)
    takeovers = [r["takeover_ms"] for r in rows if r["verdict"] == "healed" and r["takeover_ms"] is not None]
    validated = [r["validated_ms"] for r in rows if r["verdict"] == "healed" and r["validated_ms"] is not None]
    print()
    print(f"scenarios: {len(rows)}  healed correctly: {counts['healed']}/{should_heal}  "
          f"refused correctly: {counts['refused']}/{len(rows) - should_heal}  wrongly fixed: {counts['wrong']}  missed: {counts['missed']}")
    if takeovers:
        print(f"median failure → healed action: {statistics.median(takeovers):.0f} ms   "
              f"median failure → validated version: {statistics.median(validated):.0f} ms")
    from tasks_app.execution import browser_pool

    browser_pool().close()


if __name__ == "__main__":
    main()
