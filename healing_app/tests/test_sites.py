"""Which hosts a task may reach: one set of rules for the gate, the agents and validation runs."""

import pytest

from healing_app.sites import hosts_of, on_sites, start_url, url_allowed


@pytest.mark.parametrize("url", [
    "https://shop.example/cart", "http://api.shop.example:8443/x?y=1", "http://shop_web:8000/contact",
    "http://[::1]:8000/contact",
])
def test_urls_on_the_allowed_hosts(url):
    assert url_allowed(url, ["shop.example", "shop_web", "::1"])


@pytest.mark.parametrize("url", [
    "https://evil.example/", "https://shop.example.evil.example/", "https://shop.example@evil.example/",
    "https://evil.example\\\\.shop.example/", "javascript:alert(1)", "file:///etc/passwd", "https://shop .example/",
    "http://[::2]/",
])
def test_urls_that_leave_them_or_could_confuse_a_parser(url):
    assert not url_allowed(url, ["shop.example", "::1"])


def test_an_agent_may_stay_on_the_blank_start_page():
    assert on_sites("about:blank", ["shop.example"]) and on_sites("", ["shop.example"])
    assert not on_sites("about:srcdoc", ["shop.example"])


def test_hosts_come_from_urls_once_each_in_order_and_the_start_url_from_params_or_prompt():
    assert hosts_of(["https://b.example/x", 3, "http://a.example", "https://b.example/y", "not a url"]) == [
        "b.example", "a.example"
    ]
    assert start_url({"base_url": "https://shop.example"}, "ignored") == "https://shop.example"
    assert start_url({}, "Buy a mug on https://mugs.example/shop.") == "https://mugs.example/shop"
    assert start_url({}, "Buy a mug on Mugs.example") == "https://mugs.example/"
    assert start_url({}, "no site at all") is None
