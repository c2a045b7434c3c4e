from functools import wraps

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import user_passes_test
from django.templatetags.static import static
from django.urls import include, path, re_path, register_converter
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from anchor_site.api import api
from anchor_site.middleware import api_error
from tasks_app.audit import Actor, audit_log
from tasks_app.ids import IdConverter

register_converter(IdConverter, "id")  # before the includes below, whose patterns use it

# django-rq's pages empty queues, delete jobs and stop running ones, for any staff member: keep them to
# superusers (others are sent to the admin's login or index), and audit what they change. Its stats JSON keeps its
# token. Its copy of the pages inside the admin is off (RQ_SHOW_ADMIN_LINK).
superusers_only = user_passes_test(lambda user: user.is_active and user.is_superuser, login_url="admin:login")


def superusers_only_audited(view):
    guarded = superusers_only(view)

    @wraps(view)
    def audited(request, *args, **kwargs):
        response = guarded(request, *args, **kwargs)
        # Every change django-rq makes is a POST (a GET only shows, or asks to confirm).
        if request.method == "POST" and request.user.is_superuser and response.status_code < 400:
            job_ids = request.POST.getlist("job_ids") or request.POST.getlist("_selected_action")
            audit_log(
                actor=Actor(user=request.user, via="django-rq"), action=f"rq.{view.__name__}", object_type="rq_queue",
                object_id=str(kwargs.get("queue_index", "")),
                data={"path": request.path, "action": request.POST.get("action", ""), "job_ids": job_ids[:100]},
            )
        return response

    return audited


django_rq_urls = (get_api_urlpatterns() + get_admin_urlpatterns(view_wrapper=superusers_only_audited), "django_rq")

@csrf_exempt  # it changes nothing, and API clients send no CSRF token: they get this JSON, not Django's HTML 403
def api_not_found(request, *args, **kwargs):
    """Unknown API paths answer in the API's own JSON error shape, not with an HTML page."""
    hint = ""
    if request.path.endswith("/") and request.path.count("/") > 3:
        hint = f" (try {request.path.rstrip('/')}: API paths have no trailing slash)"
    return api_error(404, "not_found", f"no API endpoint at {request.path}{hint}; the reference is at /api/v1/docs")


urlpatterns = [
    # Browsers ask for /favicon.ico on every page without a <link rel="icon"> (the demo site's pages).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", api_not_found),  # django-ninja's own root answers an HTML 404
    path("api/v1/", api.urls),
    re_path(r"^api/", api_not_found),
    path("django-rq/", include(django_rq_urls)),
    path("demo-site/", include("tasks_app.demo.urls")),
    path("webhooks/", include("healing_app.webhooks_urls")),
    path("api-keys/", include("tasks_app.api_keys_urls")),
    path("", include("tasks_app.urls")),
    path("", include("healing_app.urls")),
]
