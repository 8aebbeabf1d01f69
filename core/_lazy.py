"""Lazy package fronts (PEP 562): a package's public names, imported on first use.

A package ``__init__`` re-exports its public API without paying for it at import time::

    from core._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {"core.agreement.metrics": ["accuracy"]})

``import core.errors`` then loads neither MLflow nor pandas: each submodule is imported
when one of its names is first read from the package (``core.accuracy``,
``from core import accuracy``), and the value is cached in the package's namespace, so
later reads never come back here. ``__all__`` stays a plain literal list and the names
stay visible to mypy and IDEs through ``if TYPE_CHECKING:`` imports in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a package's module ``__getattr__`` and ``__dir__`` for its lazy names.

    Args:
        package: The package's ``__name__``.
        exports: Submodule (absolute dotted name) -> the names the package re-exports from
            it.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level.

    Raises:
        ValueError: one name is exported from two submodules (a typo in the mapping).
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} is exported by {where[name]} and {module}")
            where[name] = module

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            # ``core.optimization.jobs`` after a bare ``import core.optimization``: the
            # eager fronts imported their submodules, so attribute access found them.
            if name.startswith("__"):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        # Cache it: the next read is an ordinary global lookup, never this function.
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
