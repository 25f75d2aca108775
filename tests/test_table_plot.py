"""A direction table on the share simplex (search/table_plot.py)."""

import numpy as np
import pytest
from test_replay import synthetic_table

from search.replay import Table
from search.table_plot import direction_table_figure, ternary


@pytest.mark.parametrize(("shares", "corner"), [((1, 0, 0), (0, 0)), ((0, 1, 0), (1, 0)),
                                                ((0, 0, 1), (0.5, 3**0.5 / 2))])
def test_each_single_dimension_is_a_corner(shares, corner):
    assert ternary(shares) == pytest.approx(corner)


def test_a_panel_per_factor_with_its_best_direction_starred(tmp_path):
    table = Table(synthetic_table(2.0).rows + synthetic_table(4.0, noise=0.02).rows)
    fig = direction_table_figure(table)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax, factor in zip(panels, (2.0, 4.0), strict=True):
        best = table.best(factor)
        assert ax.get_title().startswith(f"{factor:g}x: 66 directions, 2 seed(s)")
        assert f"{best.mean:.4f}" in ax.get_title()
        stars = [c for c in ax.collections if c.get_label() == "best"]
        assert np.allclose(stars[0].get_offsets()[0], ternary(best.shares))
    fig.savefig(tmp_path / "table.png")
    assert (tmp_path / "table.png").stat().st_size > 10_000
