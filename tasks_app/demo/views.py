"""A tiny third-party-looking site the product serves itself, in two versions, so the demo can break it.

Version 2 renames the contact form's button and moves the catalog page: the two kinds of change that
break real automation most often.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tasks_app.audit import dashboard_actor
from tasks_app.demo.seed import demo_switch
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
        return _not_found(request)  # the catalog moved to /demo-site/products
    return _page(request, "catalog.html")


def products(request: HttpRequest) -> HttpResponse:
    if demo_site_version() != 2:
        return _not_found(request)  # no such page yet
    return _page(request, "catalog.html")


def _not_found(request: HttpRequest) -> HttpResponse:
    """The site's own 404 page, as a real site has (not Django's, which under DEBUG is a debugging page)."""
    response = _page(request, "not_found.html")
    response.status_code = 404
    return response


@login_required
@require_POST
def control(request: HttpRequest) -> HttpResponse:
    """The dashboard's "Change the demo site" button: switch versions and start every demo task."""
    actor = dashboard_actor(request)
    try:
        version = int(request.POST.get("version", ""))
        runs = demo_switch(version=version, actor=actor)
    except ValueError:
        return HttpResponseBadRequest("version must be 1 or 2")
    messages.success(request, f"The demo site is now on version {version}; {len(runs)} demo run(s) started.")
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return redirect(target)


@login_required
def panel(request: HttpRequest) -> HttpResponse:
    """The demo control alone, for live pages to re-render when the site is switched elsewhere."""
    next_path = request.GET.get("next", "/")
    if not url_has_allowed_host_and_scheme(next_path, allowed_hosts={request.get_host()}):
        next_path = "/"
    return render(request, "includes/demo_control.html", {"next_path": next_path})
