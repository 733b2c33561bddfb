"""Copy and pickle for classes that mypyc may compile (simulator.compiled).

A compiled instance has no ``__dict__`` and its class can only be made through
``__init__``, so the default ``copy``/``pickle`` protocol fails on it. Such a
class gives ``__reduce__`` as ``(constructor, cheap arguments, attributes(self))``
and ``__setstate__`` as :func:`restore`: the copy is built, then every attribute
is set from the state, in either build.
"""

from __future__ import annotations

from typing import Any


def attributes(obj: object) -> dict[str, Any]:
    """Every attribute the instance holds: mypyc's list when compiled, else the slots or ``__dict__``."""
    cls = type(obj)
    names = getattr(cls, "__mypyc_attrs__", None)
    if names is None:
        names = [n for c in cls.__mro__ for n in getattr(c, "__slots__", ())] or list(vars(obj))
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("__"):
            continue
        try:
            out[name] = getattr(obj, name)
        except AttributeError:  # declared, never set
            pass
    return out


def restore(obj: object, state: dict[str, Any]) -> None:
    """Set the attributes of a copy from :func:`attributes` of the original."""
    for name, value in state.items():
        setattr(obj, name, value)
