import pytest

from healing_app.playwright_selectors import fingerprint_from_selector, plain_selector, same_element


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("#submit", {"id": "submit", "text": "submit"}),
        ("button#send-message.btn.primary", {"tag": "BUTTON", "id": "send-message", "class": "btn primary", "text": "send message"}),
        ('[data-testid="buy"]', {"data_testid": "buy", "text": "buy"}),
        ('input[name="email"]', {"tag": "INPUT", "name": "email", "text": "email"}),
        ('text="Sign in"', {"text": "Sign in"}),
        ('role=button[name="Send"]', {"role": "button", "text": "Send"}),
        ('get_by_role("link", name="Catalog")', {"role": "link", "text": "Catalog"}),
        ('get_by_text("Catalog")', {"text": "Catalog"}),
        ('get_by_test_id("checkout")', {"data_testid": "checkout", "text": "checkout"}),
        ('form >> #submitOrder', {"id": "submitOrder", "text": "submit order"}),
    ],
)
def test_selectors_are_read_back_into_element_properties(selector, expected):
    assert fingerprint_from_selector(selector) == expected


def test_json_quoted_locator_selectors_are_unwrapped():
    assert plain_selector('"#x"') == "#x"
    assert plain_selector("#x") == "#x"
    assert plain_selector('get_by_text("a")') == 'get_by_text("a")'


def test_a_rejected_element_is_recognised_by_xpath_or_by_its_identity():
    rejected = {"tag": "BUTTON", "id": "newsletter-send", "text": "Send", "xpath": "/html/body/form[2]/button"}
    assert same_element({"xpath": "/html/body/form[2]/button"}, rejected)
    assert same_element({"tag": "BUTTON", "id": "newsletter-send", "text": "Send", "xpath": "/html/body/div/button"}, rejected)
    assert not same_element({"tag": "BUTTON", "id": "send-message", "text": "Send", "xpath": "/html/body/form/button"}, rejected)
