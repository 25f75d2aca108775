"""timm's EfficientNet timed in PyTorch, for `effsearch bench --compare-torch`.

Run as a separate process (`python -m trainers.torch_bench MODEL RES BATCH STEPS [DTYPE]`) so
the two frameworks never share a device allocator. Eager mode, channels_last, SGD with
momentum: the common PyTorch training setup; DTYPE "bfloat16" trains under autocast, "float32"
(the CPU default, as effsearch's) without. Prints one JSON object.

timm imports torchvision at import time (for `FrozenBatchNorm2d` and its data transforms) but
never calls it to build or train an EfficientNet. On CPU-only machines the only torchvision
builds on offer are CUDA builds that fail to load against a CPU torch ("operator
torchvision::nms does not exist"), so when the real torchvision cannot be imported this
process puts a stand-in on the import path: any name imported from it is an inert class whose
use raises ImportError, so a timm feature that really needs torchvision still fails loudly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import time
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


def main(model_name: str, resolution: int, batch: int, steps: int,
         dtype: str = "float32") -> dict:
    stand_in = use_torchvision_stand_in_if_broken()
    import timm
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = timm.create_model(model_name.replace("-", "_"), num_classes=1000)
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, resolution, resolution, device=device).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]  # the median step, as effsearch's probe reports
    return {"framework": f"torch {torch.__version__} + timm {timm.__version__}"
                         + (" (torchvision stand-in)" if stand_in else ""),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "dtype": dtype, "threads": torch.get_num_threads(),
            "step_ms": step_s * 1e3, "images_per_s": batch / step_s}


if __name__ == "__main__":
    model, res, batch, steps = sys.argv[1], *map(int, sys.argv[2:5])
    print(json.dumps(main(model, res, batch, steps, *sys.argv[5:6])))
