"""Tiny networks for testing only: they compile and train in seconds on a 2-core CPU."""

# Two stages, 8 px: every search and trainer test that trains uses this one.
TINY_ARCH = "stem8-mb_r1_k3_s1_e1_c8-mb_r1_k3_s2_e3_c16-head16-res8"
# With squeeze-excitation, for the paths that only SE exercises.
TINY_SE_ARCH = "stem8-mb_r1_k3_s1_e1_c8_se0.25-mb_r1_k3_s2_e2_c16-head32"
