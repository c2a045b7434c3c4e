"""A tiny third-party-looking site the product serves itself, in two versions, so the demo can break it.

Version 2 renames the contact form's button and moves the catalog page: the two kinds of change that
break real automation most often.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from tasks_app.demo.site import demo_site_version

PRODUCTS = [("Anchor mug", "12.00"), ("Rope, 10 m", "24.50"), ("Brass compass", "89.90")]


def _page(request: HttpRequest, template: str, **context) -> HttpResponse:
    version = demo_site_version()
    response = render(request, f"demo/{template}", {"v": version, "products": PRODUCTS, **context})
    response["Cache-Control"] = "no-store"
    return response


def home(request: HttpRequest) -> HttpResponse:
    return _page(request, "home.html")


# The demo site is "someone else's" site: its form posts carry no CSRF token, like most sites tasks automate.
@csrf_exempt
def contact(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        name = request.POST.get("name", "").strip() or "friend"
        return _page(request, "thanks.html", name=name)
    return _page(request, "contact.html")


def catalog(request: HttpRequest) -> HttpResponse:
    if demo_site_version() != 1:
        raise Http404("the catalog moved to /demo-site/products")
    return _page(request, "catalog.html")


def products(request: HttpRequest) -> HttpResponse:
    if demo_site_version() != 2:
        raise Http404("no such page yet")
    return _page(request, "catalog.html")
