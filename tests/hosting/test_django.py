"""A real Django project behind colonnade, over WSGI (at /) and ASGI (at /dj):
the admin login page, a login POST with its CSRF token, and the admin's static
files served by colonnade's static handler beside the application."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.hosting.browser import Browser
from tests.hosting.support import live, site_config

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's sqlite database, migrated, with an admin user."""
    pytest.importorskip("django")
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    os.environ["COLONNADE_TEST_DJANGO_DB"] = str(path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hosting.apps.django_site.settings")
    import django
    from django.conf import settings

    django.setup()
    # Settings are read once per process: the database must be this test's.
    settings.DATABASES["default"]["NAME"] = str(path)
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    return path


def admin_static_root() -> str:
    import django.contrib.admin

    return os.path.join(os.path.dirname(django.contrib.admin.__file__), "static")


def django_site(interface: str, mount: str) -> dict[str, Any]:
    prefix = "" if mount == "/" else mount
    config = site_config(
        f"tests.hosting.apps.django_site.{interface}:application",
        path=mount,
        modules=["handler.static"],
        handlers=[{"path": f"{prefix}/static/*", "handler": "handler.static"}],
    )
    config["sites"][0]["virtual_directories"] = [
        {"path": f"{prefix}/static", "root": admin_static_root()}
    ]
    return config


@pytest.fixture(scope="module", params=[("wsgi", "/"), ("asgi", "/dj")], ids=["wsgi", "asgi"])
def site(
    request: pytest.FixtureRequest, database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    interface, mount = request.param
    with live(django_site(interface, mount), tmp_path_factory.mktemp(interface)) as server:
        yield server, "" if mount == "/" else mount


def test_django_knows_its_mount_path(site: tuple[LiveServer, str]) -> None:
    server, prefix = site
    data = Browser(server.port).get(f"{prefix}/where/").json()
    assert data["path"] == f"{prefix}/where/"
    assert data["path_info"] == "/where/"
    assert data["reverse"] == f"{prefix}/where/"
    assert data["absolute"] == f"http://127.0.0.1:{server.port}{prefix}/where/"


def test_admin_login_page_renders(site: tuple[LiveServer, str]) -> None:
    server, prefix = site
    page = Browser(server.port).get(f"{prefix}/admin/login/")
    assert page.status == 200
    assert "Django administration" in page.text
    # (Django caches STATIC_URL with the script prefix of the first request in the
    # process, so the href's prefix depends on which site ran first.)
    assert '/static/admin/css/base.css"' in page.text


def test_admin_login_with_csrf_token_round_trip(site: tuple[LiveServer, str]) -> None:
    server, prefix = site
    b = Browser(server.port)
    login = b.get(f"{prefix}/admin/login/?next={prefix}/admin/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert match and "csrftoken" in b.cookies
    page = b.post_form(
        f"{prefix}/admin/login/?next={prefix}/admin/",
        {"csrfmiddlewaretoken": match.group(1), "username": "admin", "password": PASSWORD},
    )
    assert page.status == 302, page.text[:500]
    assert page.headers["Location"] == f"{prefix}/admin/"
    assert "sessionid" in b.cookies
    home = b.get(f"{prefix}/admin/")
    assert home.status == 200
    assert "Site administration" in home.text


def test_a_post_without_the_csrf_token_is_refused(site: tuple[LiveServer, str]) -> None:
    server, prefix = site
    b = Browser(server.port)
    b.get(f"{prefix}/form/")
    assert b.post_form(f"{prefix}/form/", {"value": "x"}).status == 403
    token = b.cookies["csrftoken"]
    page = b.post_form(f"{prefix}/form/", {"value": "x", "csrfmiddlewaretoken": token})
    assert (page.status, page.text) == (200, "got x")


def test_static_files_are_served_by_colonnade(site: tuple[LiveServer, str]) -> None:
    server, prefix = site
    page = Browser(server.port).get(f"{prefix}/static/admin/css/base.css")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/css")
    assert page.headers["ETag"]  # the static handler's validators, not Django's
    with open(os.path.join(admin_static_root(), "admin", "css", "base.css"), "rb") as f:
        assert page.body == f.read()
