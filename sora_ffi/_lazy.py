"""numpy, imported on first use.

`import sora_ffi` must stay cheap (numpy alone takes ~100 ms to import): the modules that
work with arrays refer to ``np`` from here, and numpy is imported the first time one of
its attributes is read, i.e. when a frame, a sink read or a source call needs it.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


np: Any = _LazyModule("numpy")
