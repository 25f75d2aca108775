"""A stand-in for torchvision, so that timm imports on machines where torchvision cannot.

timm imports torchvision at import time (for `FrozenBatchNorm2d` and its data transforms) but
never calls it to build, run or train an EfficientNet. On CPU-only machines the only
torchvision builds on offer are often CUDA builds that fail to load against a CPU torch
("operator torchvision::nms does not exist"), so when the real torchvision cannot be imported,
`use_torchvision_stand_in_if_broken` puts a stand-in on the import path: any name imported from
it is an inert class whose use raises ImportError, so a timm feature that really needs
torchvision still fails loudly. Written here because no package provides such a shim.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any


class _Unavailable(type):
    """Metaclass of the stand-in's names: attribute access yields more stand-ins."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{cls.__qualname__}.{name}")


def _unavailable(name: str) -> type:
    def refuse(*_: Any, **__: Any) -> None:
        raise ImportError(f"torchvision is not importable here, so {name} is unavailable")

    return _Unavailable(name, (), {"__init__": refuse, "__qualname__": name})


def _module_getattr(module: str) -> Any:
    def getattr_(name: str) -> type:
        if name.startswith("__"):  # __file__, __spec__...: what introspection asks for
            raise AttributeError(name)
        return _unavailable(f"{module}.{name}")

    return getattr_


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `torchvision` and its submodules to empty packages of stand-in names."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "torchvision" and not fullname.startswith("torchvision."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []  # a package, so submodule imports come back here
        module.__getattr__ = _module_getattr(spec.name)  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def use_torchvision_stand_in_if_broken() -> bool:
    """Installs the stand-in when torchvision is missing or fails to load; True if it did."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError, or RuntimeError from a build for another torch
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StandInFinder())
        return True
    return False
