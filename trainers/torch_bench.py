"""timm's EfficientNet timed in PyTorch, for `effsearch bench --compare-torch`.

Run as a separate process (`python -m trainers.torch_bench MODEL RES BATCH STEPS [DTYPE]`) so
the two frameworks never share a device allocator. Eager mode, channels_last, SGD with
momentum: the common PyTorch training setup; DTYPE "bfloat16" trains under autocast, "float32"
(the CPU default, as effsearch's) without. Prints one JSON object.

timm imports torchvision at import time; where it cannot load, the stand-in of
`space.torchvision_stand_in` takes its place.
"""

from __future__ import annotations

import json
import sys
import time

from space.torchvision_stand_in import use_torchvision_stand_in_if_broken


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
