"""The reproduction study's pieces (benchmarks/reproduction.py), aggregated over seeds: one JSON per task, the
tables of benchmarks/REPRODUCTION.md (printed as Markdown) and a figure per claim, on the paper's axes.

    python benchmarks/reproduction_report.py --work .device/study --out benchmarks/reproduction

Mean ± standard deviation over the seeds present (each seed's noise value is its mean over draws).
"""
from __future__ import annotations

import argparse
import json
import statistics
from functools import cache
from pathlib import Path

from matplotlib.figure import Figure
from reproduction import (
    NOISE_BITS,
    PRUNE_MODELS,
    SWEEP_COMPONENTS,
    TASKS,
    TRAIN_NOISE_MODELS,
    TRAIN_SIGMAS,
    Task,
    mixed_bits,
    smallest_widths,
    task_config,
)

from pipeline.config import ModelConfig
from pipeline.cost import model_proxies

COSTS = ("ace", "size_bits", "adc")


def load(work: Path, task: str) -> dict[str, dict[str, dict]]:
    """{seed folder: {piece name: value}} of one task."""
    seeds = {}
    for folder in sorted((work / task).glob("s*")):
        seeds[folder.name] = {str(p.relative_to(folder).with_suffix("")): json.loads(p.read_text())
                              for p in sorted(folder.rglob("*.json"))}
    return seeds


def spread(values: list[float]) -> tuple[float, float, int]:
    """(mean, standard deviation, n); the deviation is 0 for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def fmt(values: list[float], scale: float = 100) -> str:
    if not values:
        return "—"
    mean, std, n = spread([scale * v for v in values])
    return f"{mean:.1f} ± {std:.1f}" + ("" if n >= 3 else f" (n={n})")


def collect(seeds: dict, piece: str, key: str) -> list[float]:
    return [pieces[piece][key] for pieces in seeds.values() if piece in pieces and key in pieces[piece]]


def sweep_curves(seeds: dict, task: Task) -> dict[str, dict[int, dict[str, list[float]]]]:
    """component → width → {"ptq": [...], "qat": [...]} over seeds."""
    return {c: {b: {"ptq": collect(seeds, f"sweep/{c}{b}", "ptq/test/acc"),
                    "qat": collect(seeds, f"sweep/{c}{b}", "test/acc")} for b in task.bits}
            for c in task.components}


def widths_needed(curves: dict, reference: float, method: str) -> dict[str, int | None]:
    means = {(c, b): statistics.fmean(v[method]) for c, per in curves.items() for b, v in per.items() if v[method]}
    return smallest_widths(means, reference)


@cache
def model_of(task: Task) -> ModelConfig:
    return task_config(task).model


def costs_of(task: Task, bits: dict) -> dict:
    m = model_of(task)
    return model_proxies(m.n_layers, m.d_model, m.d_state, 1, task.n_classes, bits)


def sweep_table(name: str, task: Task, seeds: dict) -> tuple[list[str], dict]:
    floats = collect(seeds, "float", "test/acc")
    curves = sweep_curves(seeds, task)
    reference = statistics.fmean(floats)
    need = {m: widths_needed(curves, reference, m) for m in ("ptq", "qat")}
    lines = [f"**{name}**: float {fmt(floats)}% test ({len(floats)} seeds). PTQ / QAT test accuracy (%) per width:",
             "", "| component | " + " | ".join(f"{b} bits" for b in task.bits) + " | width kept (PTQ / QAT) |",
             "| --- |" + " ---: |" * (len(task.bits) + 1)]
    for c, per in curves.items():
        cells = [f"{fmt(v['ptq'])} / {fmt(v['qat'])}" for v in per.values()]
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {need['ptq'][c]} / {need['qat'][c]} |")
    return lines, {"float": floats, "curves": curves, "widths": need}


def seed_widths(pieces: dict, task: Task, method: str) -> dict[str, int | None]:
    """The widths one seed's `cost` pieces trained: the rule applied to that seed's own sweep."""
    key = "ptq/test/acc" if method == "ptq" else "test/acc"
    accs = {(c, b): pieces[f"sweep/{c}{b}"][key] for c in task.components for b in task.bits}
    return smallest_widths(accs, pieces["float"]["test/acc"])


def cost_rows(name: str, task: Task, seeds: dict) -> list[str]:
    """float → PTQ → QAT at the smallest widths each seed keeps within the tolerance: uniform, and mixed per
    component where every component was swept. Reductions are mean ± std over seeds."""
    rows, float_cost = [], costs_of(task, {})
    complete = {s: p for s, p in seeds.items()
                if "float" in p and all(f"sweep/{c}{b}" in p for c in task.components for b in task.bits)}
    settings = ["uniform"] + (["per component"] if len(task.components) > 1 else [])
    for label in settings:
        reductions, accs, chosen = {k: [] for k in COSTS}, {"ptq": [], "qat": []}, []
        for pieces in complete.values():
            widths = {m: seed_widths(pieces, task, m) for m in ("ptq", "qat")}
            bits = {m: {"all": widths[m]["all"]} if label == "uniform" else mixed_bits(widths[m]) for m in widths}
            chosen.append(" / ".join(",".join(f"{c} {w}" for c, w in bits[m].items()) for m in ("ptq", "qat")))
            if None in bits["ptq"].values() or None in bits["qat"].values():
                continue
            ptq, qat = costs_of(task, bits["ptq"]), costs_of(task, bits["qat"])
            for k in COSTS:
                reductions[k].append((float_cost[k] / ptq[k], ptq[k] / qat[k], float_cost[k] / qat[k]))
            for m, key in (("ptq", "ptq/test/acc"), ("qat", "test/acc")):
                piece = f"sweep/all{bits[m]['all']}" if label == "uniform" else f"cost/{m}_mixed"
                accs[m] += [pieces[piece][key if label == "uniform" else "test/acc"]] if piece in pieces else []
        cells = [" / ".join(fmt([r[i] for r in reductions[k]], 1) for i in range(2)) + " / **"
                 + fmt([r[2] for r in reductions[k]], 1) + "**" if reductions[k] else "— (a width not found)"
                 for k in COSTS]
        rows.append(f"| {name} | {label}; per seed PTQ / QAT: {'; '.join(chosen)} | " + " | ".join(cells)
                    + f" | {fmt(accs['ptq'])} / {fmt(accs['qat'])} |")
    searched = [p["cost/search"] for p in seeds.values() if "cost/search" in p]
    if searched:
        chosen = "; ".join(",".join(f"{c} {w}" for c, w in r["final"]["bits"].items()) for r in searched)
        cells = ["— / — / **" + fmt([float_cost[k] / r[f"cost/{k}"] for r in searched], 1) + "**" for k in COSTS]
        rows.append(f"| {name} | greedy search (QAT only), per seed: {chosen} | " + " | ".join(cells)
                    + f" | — / {fmt([r['final']['test_acc'] for r in searched])} |")
    return rows


def noise_table(name: str, seeds: dict) -> tuple[list[str], dict]:
    curves = {}
    for protocol in ("paper", "crossbar"):
        for model in ("float", *(f"all{b}" for b in NOISE_BITS)):
            per_seed = [pieces[f"noise/test/{protocol}/{model}"] for pieces in seeds.values()
                        if f"noise/test/{protocol}/{model}" in pieces]
            if per_seed:
                curves[protocol, model] = {sigma: [p[sigma]["mean"] for p in per_seed] for sigma in per_seed[0]
                                           if sigma != "seconds"}
    if not curves:
        return [], {}
    sigmas = list(next(iter(curves.values())))
    lines = [f"**{name}**: test accuracy (%) under weight noise σ (relative to each tensor's range), "
             f"3 draws per seed:", "",
             "| protocol | model | " + " | ".join(f"σ {100 * float(s):g}%" for s in sigmas) + " |",
             "| --- | --- |" + " ---: |" * len(sigmas)]
    for (protocol, model), curve in curves.items():
        label = "float" if model == "float" else f"QAT {model[3:]} bits"
        lines.append(f"| `{protocol}` | {label} | " + " | ".join(fmt(curve[s]) for s in sigmas) + " |")
    return lines, curves


def noise_training_table(name: str, seeds: dict, tested: dict) -> tuple[list[str], dict]:
    """QS4D's panel d: each model fine-tuned for an epoch under `paper` noise of σ and tested at that σ; beside it,
    in parentheses, the same model tested at σ without that training (where σ is on the test curve)."""
    curves = {}
    for model in TRAIN_NOISE_MODELS:
        per_sigma = {f"{sigma:g}": [p[f"noise/train/{model}/{sigma:g}"]["curve"][f"{sigma:g}"]["mean"]
                                    for p in seeds.values() if f"noise/train/{model}/{sigma:g}" in p]
                     for sigma in TRAIN_SIGMAS}
        if any(per_sigma.values()):
            curves[model] = per_sigma
    if not curves:
        return [], {}
    lines = [f"**{name}**: fine-tuned 1 epoch under `paper` noise of σ and tested at σ (test accuracy %; in "
             "parentheses: tested at σ without that training):", "",
             "| model | " + " | ".join(f"σ {100 * s:g}%" for s in TRAIN_SIGMAS) + " |",
             "| --- |" + " ---: |" * len(TRAIN_SIGMAS)]
    for model, per_sigma in curves.items():
        cells = []
        for sigma, values in per_sigma.items():
            before = tested.get(("paper", model), {}).get(sigma)
            cells.append(fmt(values) + (f" ({fmt(before)})" if before else ""))
        label = "float" if model == "float" else f"QAT {model[3:]} bits"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, curves


def size_table(name: str, task: Task, seeds: dict) -> tuple[list[str], dict, tuple[int, int]]:
    """Accuracy over the state size N and the width H, float and QAT at each width of the size table; the task's
    own size comes from its sweep."""
    m = model_of(task)
    own = (m.d_state, m.d_model)
    grid = {}
    for n, h in sorted({*task.sizes, own}):
        prefix = "" if (n, h) == own else f"size/N{n}H{h}/"
        grid[n, h] = {"float": collect(seeds, f"{prefix}float", "test/acc")}
        grid[n, h] |= {b: collect(seeds, f"{prefix}{'sweep/' if not prefix else ''}all{b}", "test/acc")
                       for b in (10, 8, 7, 6)}
    if not any(v["float"] for k, v in grid.items() if k != own):
        return [], {}, own
    lines = [f"**{name}**: test accuracy (%) over the state size N and the width H:", "",
             "| N | H | float | QAT 10 bits | 8 bits | 7 bits | 6 bits |", "|" + " ---: |" * 7]
    for (n, h), row in grid.items():
        lines.append(f"| {n} | {h} | " + " | ".join(fmt(v) for v in row.values()) + " |")
    return lines, grid, own


def prune_table(name: str, seeds: dict) -> tuple[list[str], dict]:
    parts = ("structured", "unstructured", "mixing")
    found = {}
    lines = [f"**{name}**: pruned at 1 pp accuracy on the selection split, no recovery (% of modes / S4D entries / "
             "mixing weights; per-layer modes):", "",
             "| selection (protocol) | model | modes | entries | mixing | modes per layer | accuracy before → after |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for protocol in ("ours", "qs4d"):
        for model in PRUNE_MODELS:
            piece = f"prune/{protocol}/{model}"
            if not collect(seeds, piece, "pruned/structured_frac"):
                continue
            found[protocol, model] = {p: collect(seeds, piece, f"pruned/{p}_frac") for p in parts}
            layers = sorted({k.split("/")[1] for s in seeds.values() for k in s.get(piece, {})
                             if k.startswith("pruned/layer")})
            found[protocol, model] |= {f"{layer}/{p}": collect(seeds, piece, f"pruned/{layer}/{p}_frac")
                                       for layer in layers for p in parts}
            per_layer = ", ".join(fmt(collect(seeds, piece, f"pruned/{layer}/structured_frac")) for layer in layers)
            split = "validation (ours)" if protocol == "ours" else "test (QS4D)"
            label = "float" if model == "float" else f"QAT {model[3:]} bits"
            lines.append(f"| {split} | {label} | " + " | ".join(fmt(found[protocol, model][p]) for p in parts)
                         + f" | {per_layer} | {fmt(collect(seeds, piece, 'before'))} → "
                         f"{fmt(collect(seeds, piece, 'after'))} |")
    return (lines if found else []), found


def init_rows(name: str, task: Task, seeds: dict) -> list[str]:
    rows = []
    for bits in (8, 6, 4):
        scratch = collect(seeds, f"init/scratch{bits}", "test/acc")
        if scratch:
            rows.append(f"| {name} | {bits} | {fmt(collect(seeds, f'sweep/all{bits}', 'test/acc'))} | "
                        f"{fmt(scratch)} | {fmt(collect(seeds, 'float', 'test/acc'))} |")
    return rows


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_sweep(name: str, data: dict, path: Path) -> None:
    """QS4D's per-component figure: PTQ (dashed) and QAT over the width, float as a line, the widths each needs
    shaded between."""
    curves, reference = data["curves"], 100 * statistics.fmean(data["float"])
    fig = Figure(figsize=(2.4 * min(4, len(curves)), 2.4 * ((len(curves) + 3) // 4)))
    axes = fig.subplots((len(curves) + 3) // 4, min(4, len(curves)), squeeze=False).ravel()
    for ax, (component, per) in zip(axes, curves.items()):
        for method, style in (("ptq", "o--"), ("qat", "o-")):
            xs = [b for b, v in per.items() if v[method]]
            ax.errorbar(xs, [100 * statistics.fmean(per[b][method]) for b in xs],
                        [100 * spread(per[b][method])[1] for b in xs], fmt=style, ms=3, label=method.upper())
        ax.axhline(reference, color="k", ls="--", lw=1)
        low, high = data["widths"]["qat"][component], data["widths"]["ptq"][component]
        if low is not None and high is not None and high > low:
            ax.axvspan(low, high, color="tab:green", alpha=0.25)
        ax.set_ylim(max(0, reference - 40), min(100, reference + 5))
        ax.set_title(component, fontsize=9)
        ax.set_xticks(list(per))
        ax.set_xlabel("bits")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: PTQ vs QAT per component", fontsize=10)
    _save(fig, path)


def plot_noise(name: str, curves: dict, trained: dict, path: Path) -> None:
    """QS4D's noise figure: accuracy over the relative noise, one line per width; panel c (noise during test) once
    per protocol, and panel d (noise during training and test) where it was run."""
    fig = Figure(figsize=(12 if trained else 8, 3.2))
    axes = fig.subplots(1, 3 if trained else 2, sharey=True)
    for ax, protocol in zip(axes, ("paper", "crossbar")):
        for (p, model), curve in curves.items():
            if p == protocol:
                sigmas = list(curve)
                ax.errorbar([100 * float(s) for s in sigmas], [100 * statistics.fmean(curve[s]) for s in sigmas],
                            [100 * spread(curve[s])[1] for s in sigmas], fmt="o-", ms=3,
                            label="fp" if model == "float" else model[3:])
        ax.set_title(f"noise during test, protocol `{protocol}`", fontsize=9)
    if trained:
        for model, curve in trained.items():
            xs = [s for s in curve if curve[s]]
            axes[2].errorbar([100 * float(s) for s in xs], [100 * statistics.fmean(curve[s]) for s in xs],
                             [100 * spread(curve[s])[1] for s in xs], fmt="o-", ms=3,
                             label="fp" if model == "float" else model[3:])
        axes[2].set_title("noise during training + test, `paper`", fontsize=9)
    for ax in axes:
        ax.set_xlabel("rel. noise (%)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(title="bits", fontsize=7)
    fig.suptitle(name, fontsize=10)
    _save(fig, path)


def plot_size(name: str, grid: dict, own: tuple[int, int], path: Path) -> None:
    """QS4D's size panels (a, b): accuracy over N at the task's H and over H at the task's N, one line per width."""
    fig = Figure(figsize=(8, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, axis, label in ((axes[0], 0, "state dimension N"), (axes[1], 1, "model width H")):
        line = sorted(size for size in grid if size[1 - axis] == own[1 - axis])
        for width in ("float", 10, 8, 7, 6):
            xs = [size for size in line if grid[size][width]]
            ax.errorbar([size[axis] for size in xs], [100 * statistics.fmean(grid[size][width]) for size in xs],
                        [100 * spread(grid[size][width])[1] for size in xs], fmt="o-", ms=3,
                        label="fp" if width == "float" else str(width))
        ax.set_xscale("log")
        ax.set_xticks([size[axis] for size in line], [str(size[axis]) for size in line])
        ax.minorticks_off()
        ax.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(title="bits", fontsize=7)
    fig.suptitle(name, fontsize=10)
    _save(fig, path)


def plot_prune(name: str, found: dict, path: Path) -> None:
    """QS4D's pruning figure: per layer and for the model, the fraction pruned at 7 bits, 10 bits and float."""
    models = [m for m in ("all7", "all10", "float") if any(k[1] == m for k in found)]
    layers = sorted({k.split("/")[0] for v in found.values() for k in v if "/" in k}) + ["model"]
    fig = Figure(figsize=(2.0 * len(layers), 3.4))
    axes = fig.subplots(1, len(layers), sharey=True)
    for ax, layer in zip(axes, layers):
        for protocol, style in (("ours", "o-"), ("qs4d", "s--")):
            for part, color in (("unstructured", "tab:blue"), ("structured", "tab:orange"), ("mixing", "tab:green")):
                key = part if layer == "model" else f"{layer}/{part}"
                xs = [i for i, m in enumerate(models) if (protocol, m) in found and found[protocol, m].get(key)]
                if xs:
                    ax.errorbar(xs, [100 * statistics.fmean(found[protocol, models[i]][key]) for i in xs],
                                [100 * spread(found[protocol, models[i]][key])[1] for i in xs], fmt=style,
                                color=color, ms=3, label=f"{part} ({protocol})")
        ax.set_xticks(range(len(models)), [m[3:] + " bit" if m != "float" else "fp" for m in models])
        ax.set_title(layer, fontsize=9)
    axes[0].set_ylabel("pruned (%)")
    axes[-1].legend(fontsize=6)
    fig.suptitle(f"{name}: pruning at 1 pp", fontsize=10)
    _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/study"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reproduction"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cost_lines, init_lines = [], []
    for name, task in TASKS.items():
        seeds = load(args.work, name)
        if not any("float" in pieces for pieces in seeds.values()):
            continue
        (args.out / f"{name}.json").write_text(json.dumps(seeds, indent=1, sort_keys=True))
        lines, sweep = sweep_table(name, task, seeds)
        print("\n".join(lines), end="\n\n")
        if set(task.components) == set(SWEEP_COMPONENTS) or len(sweep["curves"]["all"]) > 1:
            plot_sweep(name, sweep, args.out / f"sweep_{name}.png")
        cost_lines += cost_rows(name, task, seeds)
        init_lines += init_rows(name, task, seeds)
        lines, curves = noise_table(name, seeds)
        trained_lines, trained = noise_training_table(name, seeds, curves)
        if lines:
            print("\n".join(lines + [""] + trained_lines), end="\n\n")
            plot_noise(name, curves, trained, args.out / f"noise_{name}.png")
        lines, grid, own = size_table(name, task, seeds)
        if lines:
            print("\n".join(lines), end="\n\n")
            plot_size(name, grid, own, args.out / f"size_{name}.png")
        lines, found = prune_table(name, seeds)
        if lines:
            print("\n".join(lines), end="\n\n")
            plot_prune(name, found, args.out / f"prune_{name}.png")
    print("| task | widths (bits) | ACE ÷: float→PTQ / PTQ→QAT / **float→QAT** | size ÷ | ADC ÷ | test accuracy (%) "
          "PTQ / QAT |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(cost_lines), end="\n\n")
    print("| task | bits | QAT from float | QAT from scratch | float |\n| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(init_lines))


if __name__ == "__main__":
    main()
