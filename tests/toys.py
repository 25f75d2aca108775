"""Tiny networks for testing only: they compile and train in seconds on a 2-core CPU."""

# Two stages, 8 px: every search and trainer test that trains uses this one.
TINY_ARCH = "stem8-mb_r1_k3_s1_e1_c8-mb_r1_k3_s2_e3_c16-head16-res8"
# With squeeze-excitation, for the paths that only SE exercises.
TINY_SE_ARCH = "stem8-mb_r1_k3_s1_e1_c8_se0.25-mb_r1_k3_s2_e2_c16-head32"


def toy_search_config(name: str, *, phi: float, epochs: int, search: str = "",
                      **fields: str) -> str:
    """The source of a config file searching TINY_ARCH's directions on digits at 8 px
    (channels rounded to 2, 30% cost tolerance, no references), `phi` and `epochs` as given;
    `search`: more CoefficientSearch arguments, `fields`: SearchConfig's, both as source."""
    more = "".join(f", {key}={value}" for key, value in fields.items())
    return f'''
from search.config import CoefficientSearch, SearchConfig
from search.halving import Halving
from trainers.config import ProxyConfig

def get_config():
    return SearchConfig(
        name="{name}",
        search=CoefficientSearch(baseline="{TINY_ARCH}", channel_divisor=2, phi={phi},
                                 tolerance=0.3, references=(){", " + search if search else ""}),
        proxy=ProxyConfig(dataset="digits", epochs={epochs}, resolution=8, batch_size=128){more})
'''
