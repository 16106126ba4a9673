"""One package per model family. Importing this package imports every package in its folder, which
registers the families they define (``@register``): a new folder needs no edit here.

A family package's ``__init__.py`` is its public face. It may also offer CLI subcommands as
``COMMANDS`` (a tuple of ``genlib.cli.Command``), which ``python -m genlib`` adds.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

PACKAGES: dict[str, ModuleType] = {
    info.name: importlib.import_module(f"{__name__}.{info.name}")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name) if info.ispkg
}
