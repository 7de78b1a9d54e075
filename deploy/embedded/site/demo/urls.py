from django.contrib import admin
from django.urls import include, path
from people.views import people

urlpatterns = [
    path("", people, name="people"),
    path("webhooks/", include("producer.urls")),  # durian's web interface
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
