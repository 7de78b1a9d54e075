"""Django settings for durian's tests: the test app and a real PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import urllib.parse

_db = urllib.parse.urlsplit(
    os.environ.get("DURIAN_TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/durian")
)

SECRET_KEY = "durian-tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "producer",
    "tests.testapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/") or "durian",
        "USER": _db.username or "postgres",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
        # One test database per run, so runs sharing a server never drop each other's.
        "TEST": {"NAME": f"test_durian_{os.getpid()}"},
    }
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.testapp.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# Uploaded files of the tests go to a scratch folder, never into the checkout.
MEDIA_ROOT = tempfile.mkdtemp(prefix="durian-media-")
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DURIAN: dict[str, object] = {}
