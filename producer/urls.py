"""URLs of the web interface: ``path("webhooks/", include("producer.urls"))``."""

from __future__ import annotations

from django.urls import path

from producer import views

app_name = "durian"

urlpatterns = [
    path("", views.hook_list, name="hook-list"),
    path("hooks/<str:hook>/listeners/new/", views.listener_create, name="listener-create"),
    path("listeners/", views.listener_list, name="listener-list"),
    path("listeners/<str:listener_id>/", views.listener_detail, name="listener-detail"),
    path("listeners/<str:listener_id>/edit/", views.listener_edit, name="listener-edit"),
    path("listeners/<str:listener_id>/toggle/", views.listener_toggle, name="listener-toggle"),
    path("listeners/<str:listener_id>/rotate/", views.listener_rotate, name="listener-rotate"),
    path("listeners/<str:listener_id>/delete/", views.listener_delete, name="listener-delete"),
    path("dead-letters/", views.dead_letters, name="dead-letters"),
]
