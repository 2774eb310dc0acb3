"""One registry mechanism: names mapped to architectures, losses, colour modes, feature
extractors and weight files, so that the command line's choices, the error for a wrong name
and the code that builds the thing all read the same table (the idea of torchvision's
``models/_api.py``)::

    GAN_LOSSES = Registry("GAN loss")

    @GAN_LOSSES.register("hinge")
    def hinge(...): ...

    GAN_LOSSES.register("wgan", WassersteinLoss())  # or as a plain call
    GAN_LOSSES.get("hinge")    # the entry; an unknown name raises InputError naming the choices
    GAN_LOSSES.names()         # ("hinge", "wgan"): in registration order

Names keep their registration order (the first one is usually the default, and the order is
the one help texts and error messages show). Registering a name twice is a programming error
(``ValueError``) unless ``replace=True``. This module is a leaf: it imports nothing but
:mod:`impasto.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from impasto.errors import InputError, escape_line

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries, in registration order.

    ``kind`` names what the entries are (``"GAN architecture"``); it starts the error for an
    unknown name: ``unknown GAN architecture 'x'; choose from dcgan, sngan, pggan``.

    Reads like the read-only ``dict`` it replaces: ``name in reg``, ``reg[name]`` (same as
    :meth:`get`), iteration over the names, ``len(reg)`` and :meth:`items`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: None = None, *, replace: bool = False
                 ) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: Any = None, *, replace: bool = False) -> Any:
        """Registers ``obj`` under ``name`` and returns it; without ``obj``, a decorator that
        registers what it decorates. ``ValueError`` if ``name`` is taken (and not
        ``replace``) or is not a non-empty string."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, not {name!r}")
        if obj is None:
            def decorate(target: T) -> T:
                return self.register(name, target, replace=replace)

            return decorate
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Removes ``name`` and returns its entry (``KeyError`` if it is not registered).
        For tests and plug-ins that register something for a while."""
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry of ``name``; :class:`InputError` (one line listing the known names) for
        an unknown one."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise InputError(escape_line(
                f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}"
            )) from None

    __getitem__ = get

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        """``(name, entry)`` pairs, in registration order."""
        return tuple(self._entries.items())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
