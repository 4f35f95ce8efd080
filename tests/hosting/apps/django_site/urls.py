"""URLs: the admin, and two small views."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import path, reverse


def where(request: HttpRequest) -> JsonResponse:
    """Where Django thinks it is."""
    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "reverse": reverse("where"),
            "absolute": request.build_absolute_uri(),
        }
    )


def form(request: HttpRequest) -> HttpResponse:
    """GET: a form with a CSRF token; POST: the submitted value."""
    if request.method == "POST":
        return HttpResponse("got " + request.POST.get("value", ""), content_type="text/plain")
    token = get_token(request)
    return HttpResponse(
        f'<form method="post"><input name="csrfmiddlewaretoken" value="{token}"></form>'
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("where/", where, name="where"),
    path("form/", form),
]
