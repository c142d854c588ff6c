"""Synced traitlets made from a view model's ``TypedDict``: the fields are declared once, in ``display``."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import traitlets as t


def trait_for(hint: Any, default: Any = None) -> t.TraitType:
    """The synced trait of one field type (str, int, float, bool, list, dict, or ``X | None``)."""
    args = typing.get_args(hint)
    optional = type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    base = typing.get_origin(hint) or hint
    if base is str:
        trait: t.TraitType = t.Unicode("" if default is None else default, allow_none=optional)
    elif base is bool:
        trait = t.Bool(False if default is None else default, allow_none=optional)
    elif base is int:
        trait = t.Int(0 if default is None else default, allow_none=optional)
    elif base is float:
        trait = t.Float(None if optional else (0.0 if default is None else default), allow_none=optional)
    elif base is list:
        trait = t.List()
    elif base is dict:
        trait = t.Dict()
    else:
        raise TypeError(f"no synced trait for field type {hint!r}")
    return trait.tag(sync=True)


def synced_traits(view: type, defaults: Mapping[str, Any] | None = None) -> dict[str, t.TraitType]:
    """One synced trait per field of the ``TypedDict`` ``view``, in its declared order."""
    defaults = defaults or {}
    hints = typing.get_type_hints(view)
    return {name: trait_for(hints[name], defaults.get(name)) for name in view.__annotations__}


def with_view_traits(base: type, view: type, defaults: Mapping[str, Any] | None = None) -> type:
    """A subclass of the widget class ``base`` with ``view``'s fields as synced traits."""
    traits = synced_traits(view, defaults)
    return types.new_class(f"{view.__name__}Traits", (base,), exec_body=lambda ns: ns.update(traits))
