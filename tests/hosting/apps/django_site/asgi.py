"""The ASGI entry point."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hosting.apps.django_site.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
