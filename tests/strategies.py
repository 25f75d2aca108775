"""Hypothesis strategies for specs (shared by the round-trip, cost and model tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from space import ArchSpec, BlockSpec

# Floats with a few decimals, as people write them (e2.5, se0.125), plus arbitrary ones.
_ratio = st.one_of(st.sampled_from([1.0, 2.5, 3.0, 4.0, 6.0]),
                   st.floats(1.0, 8.0, allow_nan=False).map(lambda x: round(x, 3)))
_se = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.125]), st.floats(0.0, 1.0).map(
    lambda x: round(x, 4)))


def blocks(max_channels: int = 64, max_repeats: int = 3) -> st.SearchStrategy[BlockSpec]:
    return st.builds(BlockSpec, kernel=st.sampled_from([1, 3, 5, 7]),
                     stride=st.sampled_from([1, 2]), expansion=_ratio,
                     out_channels=st.integers(1, max_channels), se_ratio=_se,
                     repeats=st.integers(1, max_repeats), skip=st.booleans())


def archs(max_stages: int = 4, max_channels: int = 64, max_resolution: int = 64,
          max_repeats: int = 3) -> st.SearchStrategy[ArchSpec]:
    return st.builds(
        ArchSpec, stages=st.lists(blocks(max_channels, max_repeats), min_size=1,
                                  max_size=max_stages).map(tuple),
        stem_channels=st.integers(1, max_channels), head_channels=st.integers(1, 2 * max_channels),
        resolution=st.integers(8, max_resolution), num_classes=st.integers(1, 20),
        dropout=st.floats(0.0, 0.9).map(lambda x: round(x, 3)),
        drop_connect_rate=st.floats(0.0, 0.9), in_channels=st.integers(1, 4))
