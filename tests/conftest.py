import os
import sys
from pathlib import Path

# Two virtual CPU devices so the data-parallel path is exercised; must precede `import jax`.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).parent))
