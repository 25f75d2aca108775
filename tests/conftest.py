import os
import sys
from pathlib import Path

import pytest

# Two virtual CPU devices so the data-parallel path is exercised; must precede `import jax`.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).parent))
# A user's storage URL must not send the tests' studies to their database.
os.environ.pop("EFFSEARCH_STORAGE_URL", None)


@pytest.fixture
def postgres_url():
    """The CI's throwaway PostgreSQL server (.ci/postgres.sh); skipped locally without one."""
    url = os.environ.get("EFFSEARCH_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide EFFSEARCH_TEST_POSTGRES_URL (.ci/postgres.sh)")
        pytest.skip("no PostgreSQL server: run `source .ci/postgres.sh` first")
    return url
