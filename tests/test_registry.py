"""impasto.registry.Registry, and the registries built on it."""

from __future__ import annotations

import pytest

from impasto.errors import InputError
from impasto.registry import Registry


def test_register_get_names_in_order():
    reg: Registry[int] = Registry("widget")
    assert reg.register("b", 2) == 2
    reg.register("a", 1)

    @reg.register("c")
    def c() -> int:
        return 3

    assert reg.names() == ("b", "a", "c")  # registration order, not sorted
    assert list(reg) == ["b", "a", "c"] and len(reg) == 3
    assert reg.get("a") == 1 and reg["b"] == 2 and reg.get("c") is c and c() == 3
    assert reg.items() == (("b", 2), ("a", 1), ("c", c))
    assert "a" in reg and "z" not in reg and ["a"] not in reg  # unhashable: just absent
    assert repr(reg) == "Registry('widget': b, a, c)"


def test_unknown_name_is_one_line_listing_the_choices():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)
    reg.register("a", 1)
    with pytest.raises(InputError) as e:
        reg.get("x\ny")
    assert str(e.value) == r"unknown widget 'x\ny'; choose from b, a"
    with pytest.raises(InputError, match="unknown widget"):
        reg[["b"]]  # unhashable


def test_duplicates_and_bad_names_are_programming_errors():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", 3)
    assert reg.unregister("a") == 2 and "a" not in reg and reg.names() == ()
    with pytest.raises(KeyError):
        reg.unregister("a")
