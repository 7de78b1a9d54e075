"""Forms of the web interface: a listener with one matcher per field its hook provides."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from durian.addresses import AddressPolicy
from durian.exceptions import InvalidListener
from durian.match import (
    compile_spec,
    deepmatch,
    matcher_from_text,
    parse_operand,
    spec_from_json,
    spec_to_json,
)
from durian.records import validate_url
from producer.conf import get_settings

__all__ = ["KINDS", "ListenerForm"]

KINDS = [
    ("", "no condition"),
    ("any", "any value"),
    ("is", "is"),
    ("startswith", "starts with"),
    ("endswith", "ends with"),
    ("contains", "contains"),
    ("like", "like (regular expression)"),
]
_NEEDS_VALUE = {"is", "startswith", "endswith", "contains", "like"}


class ListenerForm(forms.Form):
    """URL, options and a (kind, value) pair per provided field; ``spec`` is the result."""

    url = forms.CharField(
        max_length=2048,
        label="Callback URL",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/person"}),
    )
    description = forms.CharField(max_length=500, required=False)
    rate_limit = forms.FloatField(
        required=False, min_value=0.001, label="Rate limit (deliveries per second)"
    )
    active = forms.BooleanField(required=False, initial=True, label="Deliver (active)")
    sample = forms.CharField(
        required=False,
        label="Sample payload (JSON) for the test",
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def __init__(self, *args: Any, fields: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook_fields = list(fields)
        for name in self.hook_fields:
            self.fields[f"kind_{name}"] = forms.ChoiceField(
                choices=KINDS,
                required=False,
                label=f"{name} condition",
                widget=forms.Select(attrs={"aria-label": f"{name} condition"}),
            )
            self.fields[f"value_{name}"] = forms.CharField(
                required=False,
                label=f"{name} value",
                max_length=1000,
                widget=forms.TextInput(attrs={"aria-label": f"{name} value"}),
            )
        self.spec: dict[str, Any] = {}

    def rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        """(field, kind widget, value widget) per provided field, for the template."""
        return [(n, self[f"kind_{n}"], self[f"value_{n}"]) for n in self.hook_fields]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"].strip()
        try:
            validate_url(url)
        except InvalidListener as exc:
            raise forms.ValidationError(str(exc)) from None
        refusal = AddressPolicy.from_settings(get_settings()).url_refusal(url)
        if refusal is not None:
            raise forms.ValidationError(refusal)
        return url

    def clean_sample(self) -> dict[str, Any] | None:
        text = self.cleaned_data.get("sample", "").strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"the sample is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('the sample must be a JSON object, like {"name": "Joe"}')
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        spec: dict[str, Any] = {}
        for name in self.hook_fields:
            kind = cleaned.get(f"kind_{name}") or ""
            value = (cleaned.get(f"value_{name}") or "").strip()
            if not kind:
                continue
            if kind in _NEEDS_VALUE and not value:
                self.add_error(f"value_{name}", f"give a value to compare {name} with")
                continue
            try:
                spec[name] = matcher_from_text(kind, value)
            except InvalidListener as exc:
                self.add_error(f"value_{name}", f"field {name!r}: {exc}")
        self.spec = spec_to_json(compile_spec(spec)) if spec else {}
        return cleaned

    def test_sample(self) -> bool | None:
        """Whether the conditions match the sample payload (``None``: no sample)."""
        sample = self.cleaned_data.get("sample")
        if sample is None:
            return None
        return deepmatch(compile_spec(spec_from_json(self.spec)), sample)

    @staticmethod
    def cannot_edit(match: dict[str, Any]) -> str | None:
        """Why the form cannot show a stored spec as it is (``None``: it can): one row per
        top-level field has no place for conditions on nested fields."""
        nested = sorted(
            name
            for name, condition in match.items()
            if isinstance(condition, dict) and not any(key.startswith("$") for key in condition)
        )
        if nested:
            return (
                f"its conditions on nested fields ({', '.join(nested)}) have no place in this "
                "form; change it with `durian listeners update ID --match-json ...`"
            )
        return None

    @classmethod
    def initial_for(cls, match: dict[str, Any]) -> dict[str, Any]:
        """Initial values of the matcher rows from a stored JSON match spec, written so
        that saving the form unchanged gives back the same spec: an ``is`` or
        ``contains`` text that would read as JSON (``"123"``, ``"true"``) is shown
        quoted, the other operands as they are (``cannot_edit`` says which specs the
        form cannot show)."""
        initial: dict[str, Any] = {}
        for name, condition in match.items():
            ((op, operand),) = condition.items()
            kind = op[1:]
            initial[f"kind_{name}"] = kind
            if kind == "any":
                continue
            if kind in ("is", "contains"):
                text = operand if isinstance(operand, str) else json.dumps(operand)
                read = parse_operand(text)
                if read != operand or type(read) is not type(operand):
                    text = json.dumps(operand)
                initial[f"value_{name}"] = text
            else:
                initial[f"value_{name}"] = operand
        return initial
