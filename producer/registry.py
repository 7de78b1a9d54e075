"""The ``hooks`` registry: which events this site offers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from durian.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # the registry holds hooks; it needs their class only to name it
    from producer.hooks import Hook

__all__ = ["HookRegistry", "hooks"]


class HookRegistry:
    """Hooks by name. Registering connects a hook's signals; unregistering disconnects."""

    def __init__(self) -> None:
        self._hooks: dict[str, Hook] = {}
        self.conflicts: list[tuple[Hook, Hook]] = []

    def register(self, hook: Hook | type[Hook]) -> Hook:
        """Register a hook (class or instance); returns the instance."""
        instance = hook() if isinstance(hook, type) else hook
        existing = self._hooks.get(instance.name)
        if existing is not None:
            if type(existing) is type(instance):
                return existing  # the same hook registered twice (module imported twice)
            self.conflicts.append((existing, instance))
            return existing
        self._hooks[instance.name] = instance
        instance.connect()
        return instance

    def unregister(self, name: str | Hook | type[Hook]) -> None:
        key = name if isinstance(name, str) else name.name
        hook = self._hooks.pop(key, None)
        if hook is None:
            raise ImproperlyConfigured([f"no hook named {key!r} is registered"])
        hook.disconnect()

    def get(self, name: str) -> Hook:
        try:
            return self._hooks[name]
        except KeyError:
            known = ", ".join(sorted(self._hooks)) or "none"
            raise ImproperlyConfigured(
                [f"no hook named {name!r} is registered (registered: {known})"]
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._hooks

    def __iter__(self) -> Iterator[Hook]:
        return iter(sorted(self._hooks.values(), key=lambda hook: hook.name))

    def __len__(self) -> int:
        return len(self._hooks)


hooks = HookRegistry()
