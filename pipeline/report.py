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


def plot_crossbar_accuracy(curves: dict[str, dict[str, dict[str, float]]], software: float, path: str | Path) -> Path:
    """Crossbar test accuracy (mean ± std over chips, and the worst chip) vs time after programming, per device."""
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    ax.axhline(software, color="grey", lw=1, label="software")
    for name, curve in curves.items():
        times = list(curve)
        line = ax.errorbar(range(len(times)), [curve[t]["mean"] for t in times],
                           yerr=[curve[t]["std"] for t in times], marker="o", capsize=3, label=name)
        ax.plot(range(len(times)), [curve[t]["min"] for t in times], "v", color=line[0].get_color(), alpha=0.6)
        ax.set_xticks(range(len(times)), times)
    ax.set_xlabel("time after programming (▼ worst chip)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_energy(breakdown: dict[str, float], baselines: dict[str, float], path: str | Path) -> Path:
    """Energy per inference: the analog chip's breakdown by component beside the digital baselines (log scale)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    parts = sorted(breakdown, key=breakdown.get, reverse=True)
    left.barh(parts, [breakdown[p] for p in parts])
    left.set_xscale("log")
    left.set_xlabel("pJ per inference (analog chip)")
    totals = {"analog\nchip": sum(breakdown.values()), **{name.replace(" ", "\n"): v for name, v in baselines.items()}}
    right.bar(list(totals), list(totals.values()), color=["C0"] + ["C7"] * len(baselines))
    right.set_yscale("log")
    right.set_ylabel("pJ per inference")
    return _save(fig, path)
