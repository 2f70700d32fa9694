"""Package surfaces that import nothing until a name is used (PEP 562), so that importing one
light module of a package (a wire model, a decision record) does not load the whole package.

    # in a package's __init__.py
    if TYPE_CHECKING:                       # the names, for readers and the type checker
        from router.router import Router
    __getattr__, __dir__ = lazy(__name__, {"Router": "router.router"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each exported name is imported from its
    module the first time it is asked for (then kept in the package's namespace)."""
    import sys

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*exports, *vars(sys.modules[package])})

    return __getattr__, __dir__


__all__ = ["lazy"]
