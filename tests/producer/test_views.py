"""The web interface's rules, with Django's test client against the real broker:
login and permissions on every view, CSRF on every change, errors that say what to
fix, and a secret shown exactly once."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from durian import conf
from durian.listener_store import ListenerStore

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def user(*perms: str) -> User:
    person = User.objects.create_user(f"u{User.objects.count()}", password="pw")
    for perm in perms:
        person.user_permissions.add(Permission.objects.get(codename=perm))
    return person


def client_for(*perms: str, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user(*perms))
    return client


FORM = {"url": "https://example.com/hook", "kind_name": "startswith", "value_name": "J",
        "active": "on", "save": ""}  # fmt: skip


def test_every_view_needs_a_login() -> None:
    for url in ["/webhooks/", "/webhooks/listeners/", "/webhooks/dead-letters/",
                "/webhooks/hooks/person/listeners/new/"]:  # fmt: skip
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_each_action_needs_its_permission(durian_site: conf.Settings) -> None:
    viewer = client_for("view_listener")
    assert viewer.get("/webhooks/").status_code == 200
    assert viewer.get("/webhooks/hooks/person/listeners/new/").status_code == 403
    assert viewer.post("/webhooks/hooks/person/listeners/new/", FORM).status_code == 403
    assert client_for().get("/webhooks/listeners/").status_code == 403


def test_changes_need_the_csrf_token(durian_site: conf.Settings) -> None:
    client = client_for("view_listener", "add_listener", csrf=True)
    assert client.post("/webhooks/hooks/person/listeners/new/", FORM).status_code == 403
    page = client.get("/webhooks/hooks/person/listeners/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    created = client.post(
        "/webhooks/hooks/person/listeners/new/", {**FORM, "csrfmiddlewaretoken": token[1]}
    )
    assert created.status_code == 302


def test_changes_need_the_csrf_token_even_without_the_middleware(
    durian_site: conf.Settings,
) -> None:
    from django.conf import settings
    from django.test import override_settings

    without = [m for m in settings.MIDDLEWARE if "CsrfViewMiddleware" not in m]
    with override_settings(MIDDLEWARE=without):
        client = client_for("view_listener", "add_listener", csrf=True)
        assert client.post("/webhooks/hooks/person/listeners/new/", FORM).status_code == 403
        page = client.get("/webhooks/hooks/person/listeners/new/").content.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        form = {**FORM, "csrfmiddlewaretoken": token[1]}
        assert client.post("/webhooks/hooks/person/listeners/new/", form).status_code == 302


def test_the_secret_is_shown_once_and_never_again(durian_site: conf.Settings) -> None:
    client = client_for("view_listener", "add_listener")
    created = client.post("/webhooks/hooks/person/listeners/new/", FORM)
    detail = created["Location"]
    first = client.get(detail).content.decode()
    secret = re.search(r'id="secret">(whsec_[^<]+)<', first)
    assert secret is not None
    assert secret[1] not in client.get(detail).content.decode()
    listener_id = detail.rstrip("/").rsplit("/", 1)[-1]
    with ListenerStore(durian_site) as store:
        stored = store.get(listener_id)
    assert stored.secret == secret[1] and stored.match == {"name": {"$startswith": "J"}}
    assert secret[1] not in client.get("/webhooks/listeners/").content.decode()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"url": "ftp://example.com/x"}, "url", "must start with http:// or https://"),
        ({"url": "http://192.168.1.1/x"}, "url", "192.168.1.1 is a non-public address"),
        ({"url": "http://127\u30020\u30020\u30021/x"}, "url", "uses a non-ASCII dot"),
        ({"kind_name": "like", "value_name": "(unclosed"}, "value_name", "field &#x27;name&#x27;"),
        ({"kind_name": "is", "value_name": ""}, "value_name", "give a value to compare name with"),
        ({"sample": "[1]", "test": ""}, "sample", "must be a JSON object"),
    ],
)
def test_bad_input_is_a_form_error_that_says_what_to_fix(
    durian_site: conf.Settings, changes: dict[str, str], field: str, message: str
) -> None:
    client = client_for("view_listener", "add_listener")
    response = client.post("/webhooks/hooks/person/listeners/new/", {**FORM, **changes})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_the_test_action_evaluates_the_sample_without_saving(durian_site: conf.Settings) -> None:
    client = client_for("view_listener", "add_listener")
    form = {**FORM, "test": "", "sample": '{"name": "Jane"}'}
    form.pop("save")
    hit = client.post("/webhooks/hooks/person/listeners/new/", form).content.decode()
    miss = client.post(
        "/webhooks/hooks/person/listeners/new/", {**form, "sample": '{"name": "Bob"}'}
    ).content.decode()
    assert "The sample matches" in hit and "does not match" in miss
    with ListenerStore(durian_site) as store:
        assert store.read().listeners == {}


def test_an_unknown_hook_or_listener_is_404(durian_site: conf.Settings) -> None:
    client = client_for("view_listener", "add_listener")
    assert client.get("/webhooks/hooks/nope/listeners/new/").status_code == 404
    assert client.get("/webhooks/listeners/lst_nope/").status_code == 404


def test_edit_and_enable_or_disable_write_the_listener(durian_site: conf.Settings) -> None:
    client = client_for("view_listener", "add_listener", "change_listener")
    detail = client.post("/webhooks/hooks/person/listeners/new/", FORM)["Location"]
    listener_id = detail.rstrip("/").rsplit("/", 1)[-1]
    edited = client.post(
        f"/webhooks/listeners/{listener_id}/edit/",
        {**FORM, "url": "https://example.org/new", "kind_name": "", "value_name": ""},
    )
    assert edited.status_code == 302
    assert client.post(f"/webhooks/listeners/{listener_id}/toggle/").status_code == 302
    with ListenerStore(durian_site) as store:
        stored = store.get(listener_id)
    assert stored.url == "https://example.org/new" and stored.match == {} and not stored.active
    assert client.get(f"/webhooks/listeners/{listener_id}/toggle/").status_code == 405


def test_replaying_dead_letters_needs_its_own_permission(durian_site: conf.Settings) -> None:
    viewer = client_for("view_listener")
    assert viewer.get("/webhooks/dead-letters/").status_code == 200
    assert viewer.post("/webhooks/dead-letters/", {"job": "msg_1"}).status_code == 403


def test_times_on_a_listener_page_carry_their_zone(durian_site: conf.Settings) -> None:
    from django.test import override_settings

    client = client_for("view_listener", "add_listener")
    detail = client.post("/webhooks/hooks/person/listeners/new/", FORM)["Location"]
    for zone, shown in (("UTC", "UTC"), ("Europe/Oslo", "CES?T")):
        with override_settings(TIME_ZONE=zone):
            page = client.get(detail).content.decode()
        created = re.search(r"<dt>Created</dt><dd>([^<]*)</dd>", page)
        assert created is not None and re.fullmatch(
            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {shown}", created.group(1)
        ), created


def test_editing_keeps_conditions_the_form_shows_and_refuses_what_it_cannot(
    durian_site: conf.Settings,
) -> None:
    from durian.listeners import new_listener

    client = client_for("view_listener", "change_listener")
    # "zip" is not a field the person hook lists: its row is shown all the same.
    kept = new_listener(hook="person", url="https://e.com/a",
                        match={"zip": {"$is": "0150"}, "name": {"$is": "123"}})  # fmt: skip
    nested = new_listener(hook="person", url="https://e.com/b",
                          match={"address": {"city": {"$is": "Oslo"}}})  # fmt: skip
    with ListenerStore(durian_site) as store:
        store.put(kept, nested)
    page = client.get(f"/webhooks/listeners/{kept.id}/edit/").content.decode()
    assert 'name="value_zip"' in page
    rows = {"kind_name": "is", "value_name": '"123"', "kind_zip": "is", "value_zip": '"0150"'}
    form = {"url": "https://e.com/a2", "active": "on", "save": "", **rows}
    assert client.post(f"/webhooks/listeners/{kept.id}/edit/", form).status_code == 302
    with ListenerStore(durian_site) as store:
        assert store.get(kept.id).match == kept.match  # strings stay strings
    refused = client.get(f"/webhooks/listeners/{nested.id}/edit/", follow=True)
    assert "cannot be edited here" in refused.content.decode()
    assert "durian listeners update" in refused.content.decode()
