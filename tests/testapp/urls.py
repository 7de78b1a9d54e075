from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from tests.testapp import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("hooks/person/", views.person_changed, name="person-changed"),
    path("hooks/nobody/", views.nobody, name="nobody"),
    path("webhooks/", include("producer.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
