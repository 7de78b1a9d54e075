from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from people.models import Person


class PersonForm(forms.ModelForm):
    class Meta:
        model = Person
        fields = ["name", "address", "secret"]


def people(request: HttpRequest) -> HttpResponse:
    """Add a person (each save is a `person` event) and list the latest ones."""
    form = PersonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("people")
    latest = Person.objects.order_by("-id")[:20]
    return render(request, "people/people.html", {"form": form, "people": latest})
