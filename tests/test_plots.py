import pytest

import pipeline.plots as plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or path)
    return kept


def shown_x_labels(ax) -> list[str]:
    """The non-empty tick labels inside the x axis' visible range."""
    ax.figure.draw_without_rendering()
    low, high = sorted(ax.get_xlim())
    return [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text() and low <= t.get_position()[0] <= high]


def test_energy_totals_are_drawn_from_zero_on_a_linear_axis(figures):
    plots.plot_energy({"adc": 1.2e6, "dac": 3e5, "array": 2e4}, {"digital int8": 3.2e6, "digital fp32": 1.9e7}, "x")
    right = figures[0].axes[1]
    assert right.get_yscale() == "linear" and right.get_ylim()[0] == 0
    heights = [bar.get_height() for bar in right.patches]
    assert heights[1] / heights[0] == pytest.approx(3.2e6 / 1.52e6)  # bar heights compare as the energies do


def test_a_log_axis_within_one_decade_is_labelled(figures):
    points = {"float": (8.47e6, 0.97), "QAT": (2.46e6, 0.87), "pruned": (2.33e6, 0.86)}
    plots.plot_pareto(points, "pruned", "x")
    labels = shown_x_labels(figures[0].axes[0])
    assert {"3", "5", "8"} <= set(labels), labels  # µJ, no power of ten inside the range
