"""Plots of the pipeline's results (PNG, written without a display)."""
from __future__ import annotations

from pathlib import Path

from matplotlib import ticker
from matplotlib.figure import Figure


def _subplots(*grid, figsize: tuple[float, float], **options):
    """(figure, axes) drawn without pyplot: no display, no global backend, nothing to close."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _log_axis(axis, values: list[float]) -> None:
    """A log scale for `axis` that is labelled even when `values` lie within one decade (no power of ten inside):
    plain numbers at every integer multiple of the power of ten below them."""
    axis.axes.set_xscale("log") if axis is axis.axes.xaxis else axis.axes.set_yscale("log")
    low, high = min(values), max(values)
    if high < 10 * low:
        axis.set_major_locator(ticker.LogLocator(subs=range(1, 10)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


def plot_bit_sweep(results: dict, path: str | Path) -> Path:
    """Test accuracy vs bits, one panel per component: PTQ dashed, QAT solid, float as a grey line."""
    components = [c for c in results if c != "float"]
    columns = min(4, len(components))
    rows = -(-len(components) // columns)
    fig, axes = _subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), sharey=True, squeeze=False)
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
    """Test accuracy (mean ± std over noise draws) vs σ_rel, one line per curve; a curve named `<protocol>/<model>`
    dashed."""
    fig, ax = _subplots(figsize=(4.8, 3.4))
    for name, curve in curves.items():
        sigmas = sorted(curve, key=float)
        ax.errorbar([100 * float(s) for s in sigmas], [curve[s]["mean"] for s in sigmas],
                    yerr=[curve[s]["std"] for s in sigmas], marker="o", capsize=3, label=name,
                    linestyle="--" if "/" in name else "-")
    ax.set_xlabel("weight noise σ_rel (% of max − min)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_crossbar_accuracy(curves: dict[str, dict[str, dict[str, float]]], software: float, path: str | Path) -> Path:
    """Crossbar test accuracy (mean ± std over chips, and the worst chip) vs time after programming, per device."""
    fig, ax = _subplots(figsize=(4.8, 3.4))
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
    """Energy per inference: the analog chip's breakdown by component (log scale: the parts span decades) beside
    the totals of the chip and the digital baselines (linear from zero, so bar heights compare as ratios)."""
    fig, (left, right) = _subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    parts = sorted(breakdown, key=breakdown.get, reverse=True)
    left.barh(parts, [breakdown[p] for p in parts])
    left.set_xscale("log")
    left.set_xlabel("pJ per inference (analog chip, log scale)")
    totals = {"analog\nchip": sum(breakdown.values()), **{name.replace(" ", "\n"): v for name, v in baselines.items()}}
    bars = right.bar(list(totals), [v / 1e6 for v in totals.values()], color=["C0"] + ["C7"] * len(baselines))
    right.bar_label(bars, [f"{v / 1e6:.3g}" for v in totals.values()], fontsize=8)
    right.set_ylim(0, 1.15 * max(totals.values()) / 1e6)
    right.set_ylabel("µJ per inference")
    return _save(fig, path)


def plot_costs(costs: dict[str, dict[str, float]], accuracy: dict[str, float], path: str | Path) -> Path:
    """One panel per cost (log scale), one bar per model in order (float → PTQ → QAT → pruned); test accuracy
    written on each bar."""
    models, metrics = list(costs), list(next(iter(costs.values())))
    fig, axes = _subplots(1, len(metrics), figsize=(2.9 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        values = [costs[m][metric] for m in models]
        bars = ax.bar(models, values, color=[f"C{i}" for i in range(len(models))])
        ax.set_yscale("log")
        ax.set_ylim(min(values) / 10, max(values) * 2)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for bar, model in zip(bars, models):
            ax.annotate(f"{100 * accuracy[model]:.0f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    fig.suptitle("cost per time step (ACE, ADC) or inference (energy); bar label: test accuracy", fontsize=9)
    return _save(fig, path)


def plot_pruning(fractions: dict[str, dict[str, float]], path: str | Path) -> Path:
    """Pruned fraction per layer and granularity (structured modes, unstructured entries, mixing weights)."""
    layers = list(fractions)
    kinds = sorted({k for f in fractions.values() for k in f})
    fig, ax = _subplots(figsize=(1.2 + 1.3 * len(layers), 3.2))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        ax.bar([j + i * width for j in range(len(layers))], [100 * fractions[l].get(kind, 0) for l in layers],
               width, label=kind)
    ax.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylabel("pruned (%)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (energy, accuracy) that no other point beats on both (lower energy, higher
    accuracy), by increasing energy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(points: dict[str, tuple[float, float]], current: str, path: str | Path) -> Path:
    """Accuracy vs energy per inference (points in pJ, drawn in µJ on a log axis) of every point (a model or a
    run), each named; the Pareto front joined; `current` highlighted."""
    names = list(points)
    xy = [(energy / 1e6, accuracy) for energy, accuracy in (points[n] for n in names)]
    fig, ax = _subplots(figsize=(5.2, 3.6))
    ax.scatter([p[0] for p in xy], [p[1] for p in xy], color="C7", s=18)
    for name, (x, y) in zip(names, xy):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front(xy)
    ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "o-", color="C0", label="Pareto front")
    if current in points:
        ax.scatter(*xy[names.index(current)], marker="*", s=160, color="C3", zorder=3, label=current)
    _log_axis(ax.xaxis, [p[0] for p in xy])
    ax.set_xlabel("energy per inference (µJ)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bit_descent(result: dict, path: str | Path) -> Path:
    """Validation accuracy vs cost of every candidate of the bit descent (grey), the accepted path (joined) and
    the cutoff."""
    fig, ax = _subplots(figsize=(5.2, 3.6))
    tried = [c for r in result["rounds"] for c in r["candidates"]]
    ax.scatter([c["cost"] for c in tried], [c["val_acc"] for c in tried], color="C7", s=14, label="candidates")
    ax.plot([c["cost"] for c in result["path"]], [c["val_acc"] for c in result["path"]], "o-", color="C0",
            label="accepted")
    ax.axhline(result["cutoff"], color="C3", lw=1, ls="--", label="cutoff")
    _log_axis(ax.xaxis, [c["cost"] for c in tried])
    ax.set_xlabel(result["cost"])
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)
