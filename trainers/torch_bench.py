"""timm's EfficientNet timed in PyTorch, for `effsearch bench --compare-torch`.

Run as a separate process (`python -m trainers.torch_bench MODEL RES BATCH STEPS`) so the two
frameworks never share a device allocator. Eager mode, bf16 autocast, channels_last, SGD:
the common PyTorch training setup. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time


def main(model_name: str, resolution: int, batch: int, steps: int) -> dict:
    import timm
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = timm.create_model(model_name.replace("-", "_"), num_classes=1000)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, resolution, resolution, device=device).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    step_s = (time.perf_counter() - start) / steps
    return {"framework": f"torch {torch.__version__} + timm {timm.__version__}",
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "step_ms": step_s * 1e3, "images_per_s": batch / step_s}


if __name__ == "__main__":
    model, res, batch, steps = sys.argv[1], *map(int, sys.argv[2:5])
    print(json.dumps(main(model, res, batch, steps)))
