"""Plots of the pipeline's results (PNG, written without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bit_sweep(results: dict, path: str | Path) -> Path:
    """Test accuracy vs bits, one panel per component: PTQ dashed, QAT solid, float as a grey line."""
    components = [c for c in results if c != "float"]
    columns = min(4, len(components))
    rows = -(-len(components) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), sharey=True, squeeze=False)
    for ax, component in zip(axes.flat, components):
        widths = sorted(results[component], key=int)
        x = [int(w) for w in widths]
        ax.axhline(results["float"], color="grey", lw=1, label="float")
        ax.plot(x, [results[component][w]["ptq"] for w in widths], "o--", label="PTQ")
        ax.plot(x, [results[component][w]["qat"] for w in widths], "o-", label="QAT")
        ax.set_title(component)
        ax.set_xlabel("bits")
        ax.set_xticks(x)
    for ax in axes.flat[len(components):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def plot_noise_robustness(curves: dict[str, dict[str, dict[str, float]]], path: str | Path) -> Path:
    """Test accuracy (mean ± std over noise draws) vs σ_rel, one line per model."""
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for name, curve in curves.items():
        sigmas = sorted(curve, key=float)
        ax.errorbar([100 * float(s) for s in sigmas], [curve[s]["mean"] for s in sigmas],
                    yerr=[curve[s]["std"] for s in sigmas], marker="o", capsize=3, label=name)
    ax.set_xlabel("weight noise σ_rel (% of max − min)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)
