"""Family name -> model class. Families register themselves with ``@register("name")``.

Nothing else in the project switches on family names: pages, the CLI and the checkpoint loader
all go through ``get_family``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from genlib.model import GenerativeModel

M = TypeVar("M", bound="type[GenerativeModel]")
_FAMILIES: dict[str, type["GenerativeModel"]] = {}


class UnknownFamilyError(KeyError):
    """No family is registered under that name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` reachable as ``name``."""

    def wrap(cls: M) -> M:
        if name in _FAMILIES and _FAMILIES[name] is not cls:
            raise ValueError(f"family {name!r} is already registered to {_FAMILIES[name].__name__}")
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return wrap


def get_family(name: str) -> type["GenerativeModel"]:
    """The model class registered as ``name``; UnknownFamilyError (with the known names) otherwise."""
    _load_builtin_families()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; known families: {', '.join(sorted(_FAMILIES))}"
        ) from None


def all_families() -> dict[str, type["GenerativeModel"]]:
    """All registered families, by name."""
    _load_builtin_families()
    return dict(sorted(_FAMILIES.items()))


def _load_builtin_families() -> None:
    # Importing the package imports every family package, which runs their @register decorators.
    import genlib.families  # noqa: F401
