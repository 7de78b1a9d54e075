from django.contrib import admin
from django.urls import path
from people.views import people

urlpatterns = [
    path("", people, name="people"),
    path("admin/", admin.site.urls),
]
