"""Process-level JAX setup shared by every entry point: compilation caches.

Compile time, not step time, dominates short proxies (H100, plain Flax B0: ~78 s compile, most
of it convolution autotuning). Two caches make repeated shapes free across trials and
processes: JAX's persistent compilation cache (whole executables, keyed by HLO and platform)
and, on GPUs, XLA's per-fusion autotuning cache (conv algorithm choices, which repeat from
trial to trial even when the whole program does not). Both live under one directory,
`$EFFSEARCH_CACHE_DIR` or ~/.cache/effsearch.
"""

from __future__ import annotations

import os
from pathlib import Path

_configured: Path | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("EFFSEARCH_CACHE_DIR", Path.home() / ".cache" / "effsearch"))


def configure(directory: str | Path | None = None) -> Path:
    """Turns on both caches; call before the first computation (it is idempotent)."""
    global _configured
    if _configured is not None:
        return _configured
    root = Path(directory) if directory else cache_dir()
    (root / "xla").mkdir(parents=True, exist_ok=True)
    (root / "autotune").mkdir(parents=True, exist_ok=True)
    flag = f"--xla_gpu_per_fusion_autotune_cache_dir={root / 'autotune'}"
    if "xla_gpu_per_fusion_autotune_cache_dir" not in os.environ.get("XLA_FLAGS", ""):
        # Read when the GPU backend starts; harmless on CPU.
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    import jax

    jax.config.update("jax_compilation_cache_dir", str(root / "xla"))
    # Cache anything that took over half a second to compile (the default is 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _configured = root
    return root
