"""The web interface: pick an event, create a listener for it, watch its deliveries.

Include it in a site's URLs (``path("webhooks/", include("producer.urls"))``).
Every view needs a logged-in user with the permission it names
(``durian.view_listener``, ``add_``, ``change_``, ``delete_``,
``durian.replay_deadletter``); every change is a POST with Django's CSRF token.
Listeners are read from and written to the listeners topic; a listener's secret
is shown once, right after it is created or rotated, and in no page after that.
Templates live under ``durian/`` and can be overridden by the site.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from durian.dead_letters import DeadLetters
from durian.exceptions import BrokerUnavailable, DurianError, InvalidListener, ListenerNotFound
from durian.listeners import changed, new_listener, rotated
from durian.records import ListenerSpec
from producer.backends import listener_store
from producer.conf import get_settings
from producer.forms import ListenerForm
from producer.hooks import Hook
from producer.models import DeliveryAttempt
from producer.registry import hooks

_SECRET_KEY = "durian_secret_once"

View = Callable[..., HttpResponse]


def _guarded(permission: str) -> Callable[[View], View]:
    """Login, the permission, CSRF protection (whether or not the site runs
    ``CsrfViewMiddleware``), and a readable page when the broker does not answer."""

    def decorate(view: View) -> View:
        @csrf_protect
        @login_required
        @permission_required(permission, raise_exception=True)
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except BrokerUnavailable as exc:
                return render(request, "durian/unavailable.html", {"error": exc}, status=503)

        return wrapper

    return decorate


def _listeners() -> dict[str, ListenerSpec]:
    return listener_store().read().listeners


def _listener(listener_id: str) -> ListenerSpec:
    try:
        return listener_store().get(listener_id)
    except ListenerNotFound as exc:
        raise Http404(str(exc)) from None


def _hook(name: str) -> Hook:
    if name not in hooks:
        raise Http404(f"no hook named {name!r}")
    return hooks.get(name)


def _hook_fields(name: str) -> list[str]:
    return _hook(name).fields() if name in hooks else []


def _show_secret_once(request: HttpRequest, listener_id: str, secret: str) -> None:
    request.session[_SECRET_KEY] = {"id": listener_id, "secret": secret}


# -- hooks --------------------------------------------------------------------------


@_guarded("durian.view_listener")
def hook_list(request: HttpRequest) -> HttpResponse:
    """Every hook with the fields it provides: where a new listener starts."""
    counts: dict[str, int] = {}
    for listener in _listeners().values():
        counts[listener.hook] = counts.get(listener.hook, 0) + 1
    rows = [
        {"name": hook.name, "fields": hook.fields(), "listeners": counts.get(hook.name, 0)}
        for hook in sorted(hooks, key=lambda h: h.name)
    ]
    return render(request, "durian/hook_list.html", {"hooks": rows})


# -- listeners ------------------------------------------------------------------------


@_guarded("durian.view_listener")
def listener_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip().lower()
    hook = request.GET.get("hook", "")
    state = request.GET.get("state", "")
    rows = []
    for listener in sorted(_listeners().values(), key=lambda x: x.id):
        if hook and listener.hook != hook:
            continue
        if (state == "active" and not listener.active) or (state == "inactive" and listener.active):
            continue
        text = f"{listener.id} {listener.url} {listener.description}".lower()
        if query and query not in text:
            continue
        rows.append(listener)
    context = {
        "listeners": rows,
        "hooks": sorted(h.name for h in hooks),
        "q": request.GET.get("q", ""),
        "hook": hook,
        "state": state,
    }
    return render(request, "durian/listener_list.html", context)


def _form_page(
    request: HttpRequest,
    hook: str,
    form: ListenerForm,
    *,
    listener: ListenerSpec | None = None,
    tested: bool | None = None,
) -> HttpResponse:
    context = {"hook": hook, "form": form, "listener": listener, "tested": tested}
    return render(request, "durian/listener_form.html", context, status=200)


@_guarded("durian.add_listener")
def listener_create(request: HttpRequest, hook: str) -> HttpResponse:
    """The seed's second view: a listener for the chosen event."""
    fields = _hook(hook).fields()
    if request.method != "POST":
        return _form_page(request, hook, ListenerForm(fields=fields))
    form = ListenerForm(request.POST, fields=fields)
    if not form.is_valid():
        return _form_page(request, hook, form)
    if "test" in request.POST:
        return _form_page(request, hook, form, tested=form.test_sample())
    data = form.cleaned_data
    try:
        listener = new_listener(
            hook=hook,
            url=data["url"],
            match=form.spec,
            active=bool(data["active"]),
            description=data["description"],
            rate_limit=data["rate_limit"],
        )
    except DurianError as exc:
        form.add_error(None, str(exc))
        return _form_page(request, hook, form)
    listener_store().put(listener)
    _show_secret_once(request, listener.id, listener.secret)
    messages.success(request, f"Listener {listener.id} created.")
    return redirect("durian:listener-detail", listener_id=listener.id)


@_guarded("durian.view_listener")
def listener_detail(request: HttpRequest, listener_id: str) -> HttpResponse:
    listener = _listener(listener_id)
    once = request.session.pop(_SECRET_KEY, None)
    secret = once["secret"] if once and once.get("id") == listener.id else None
    attempts = DeliveryAttempt.objects.filter(listener_id=listener.id)[:100]
    grace = [old.expires_at for old in listener.old_secrets if old.expires_at > datetime.now(UTC)]
    context = {
        "listener": listener,
        "secret": secret,
        "attempts": attempts,
        "match": msgspec.json.encode(listener.match).decode() if listener.match else "",
        "grace_until": max(grace) if grace else None,
    }
    return render(request, "durian/listener_detail.html", context)


@_guarded("durian.change_listener")
def listener_edit(request: HttpRequest, listener_id: str) -> HttpResponse:
    listener = _listener(listener_id)
    reason = ListenerForm.cannot_edit(listener.match)
    if reason is not None:
        messages.error(request, f"Listener {listener.id} cannot be edited here: {reason}.")
        return redirect("durian:listener-detail", listener_id=listener.id)
    # Every field the spec has a condition on gets its row, listed by the hook or not:
    # a condition the form did not show would be dropped on save.
    hook_fields = _hook_fields(listener.hook)
    fields = hook_fields + sorted(set(listener.match) - set(hook_fields))
    if request.method != "POST":
        initial = {
            "url": listener.url,
            "description": listener.description,
            "rate_limit": listener.options.rate_limit,
            "active": listener.active,
            **ListenerForm.initial_for(listener.match),
        }
        form = ListenerForm(initial=initial, fields=fields)
        return _form_page(request, listener.hook, form, listener=listener)
    form = ListenerForm(request.POST, fields=fields)
    if not form.is_valid():
        return _form_page(request, listener.hook, form, listener=listener)
    if "test" in request.POST:
        return _form_page(
            request, listener.hook, form, listener=listener, tested=form.test_sample()
        )
    data = form.cleaned_data
    updated = changed(
        listener,
        url=data["url"],
        match=form.spec,
        description=data["description"],
        active=bool(data["active"]),
        options=msgspec.structs.replace(listener.options, rate_limit=data["rate_limit"]),
    )
    listener_store().put(updated)
    messages.success(request, f"Listener {listener.id} saved.")
    return redirect("durian:listener-detail", listener_id=listener.id)


@require_POST
@_guarded("durian.change_listener")
def listener_toggle(request: HttpRequest, listener_id: str) -> HttpResponse:
    listener = _listener(listener_id)
    try:
        listener_store().put(changed(listener, active=not listener.active))
    except InvalidListener as exc:  # enabling one whose URL is refused now
        messages.error(request, f"Listener {listener.id} not enabled: {exc}")
        return redirect("durian:listener-detail", listener_id=listener.id)
    state = "disabled" if listener.active else "enabled"
    messages.success(request, f"Listener {listener.id} {state}.")
    return redirect("durian:listener-detail", listener_id=listener.id)


@require_POST
@_guarded("durian.change_listener")
def listener_rotate(request: HttpRequest, listener_id: str) -> HttpResponse:
    """A new secret; the current one keeps signing (as a second signature) for a grace period."""
    listener = _listener(listener_id)
    new = rotated(listener)
    listener_store().put(new)
    retired = new.old_secrets[-1]
    _show_secret_once(request, listener.id, new.secret)
    messages.success(
        request,
        f"New secret for {listener.id}. The previous one also signs until "
        f"{retired.expires_at:%Y-%m-%d %H:%M} UTC.",
    )
    return redirect("durian:listener-detail", listener_id=listener.id)


@_guarded("durian.delete_listener")
def listener_delete(request: HttpRequest, listener_id: str) -> HttpResponse:
    listener = _listener(listener_id)
    if request.method != "POST":
        return render(request, "durian/listener_confirm_delete.html", {"listener": listener})
    listener_store().delete(listener.id)
    messages.success(request, f"Listener {listener.id} deleted.")
    return redirect("durian:listener-list")


# -- dead letters ---------------------------------------------------------------------


@_guarded("durian.view_listener")
def dead_letters(request: HttpRequest) -> HttpResponse:
    store = DeadLetters(get_settings())
    if request.method == "POST":
        if not request.user.has_perm("durian.replay_deadletter"):
            return render(request, "durian/forbidden.html", status=403)
        chosen = set(request.POST.getlist("job"))
        letters = [x for x in store.read() if x.job is not None and x.job.id in chosen]
        if not letters:
            messages.error(request, "Choose the dead letters to replay.")
            return redirect("durian:dead-letters")
        report = store.replay(letters, _listeners())
        messages.success(request, f"Replayed {len(report.replayed)} dead letter(s).")
        for reason, ids in report.skipped.items():
            messages.warning(request, f"Skipped {len(ids)}: {reason}.")
        return redirect("durian:dead-letters")
    listener_id = request.GET.get("listener", "")
    letters = [
        x
        for x in store.read()
        if x.job is not None and (not listener_id or x.job.listener_id == listener_id)
    ]
    letters.sort(key=lambda x: x.timestamp, reverse=True)
    rows = [
        {"letter": x, "dead_at": datetime.fromtimestamp(x.timestamp, UTC)} for x in letters[:500]
    ]
    return render(request, "durian/dead_letters.html", {"rows": rows, "listener": listener_id})
