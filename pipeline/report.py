"""The run's report as markdown: tables of the stages' metrics beside the plots under plots/.

Inputs are the metrics files' contents (dicts as written by the stages) and the energy of each model; `markdown`
only formats them. Other runs are compared outside the report (`python -m pipeline.runs`, the MLflow UI), so the
report depends on this run's files alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import COMPONENTS, Config

MODELS = ("float", "PTQ", "QAT", "pruned", "fine-tuned")
NOISE_ORDER = ("float", "qat", "finetuned")


def noise_order(name: str) -> tuple[str, int]:
    """Robustness curves by protocol (the `crossbar` ones, unprefixed, first), then model."""
    protocol, _, model = name.rpartition("/")
    return protocol, NOISE_ORDER.index(model)
COSTS = {"ace": "ACE", "size_bits": "model size (bits)", "adc": "ADC (bits/step)", "energy_pj": "energy (pJ)"}


@dataclass
class ReportInputs:
    title: str
    settings: list[str]  # what was run, one line per step (`settings`)
    metrics: dict[str, dict]  # metrics file stem → its contents
    energy: dict[str, float]  # model → pJ per inference on the first device's chip
    times: list[str]  # the crossbar evaluation's time labels, in order


def settings(config: Config) -> list[str]:
    """The run's settings that the report's numbers depend on, one line per step."""
    c, m = config, config.model
    pr, ft, ev = c.prune, c.finetune, c.evaluate
    bits = ", ".join(f"{k} {v}" for k, v in c.qat.bits.items())
    split = "validation" if pr.select_on == "validation" else "TEST (QS4D's choice, reproduction only: biased)"
    budget = f"{split} loss ≤ +{pr.loss_tolerance:.0%}" if pr.criterion == "loss" else \
        f"{split} accuracy ≥ −{100 * pr.tolerance:g} pp"
    return [f"data `{c.data.name}`, seed {c.seed}; model {m.n_layers} layers, H {m.d_model}, N {m.d_state}",
            f"float pretraining: {c.pretrain.epochs} epochs",
            f"QAT: target `{c.qat.target}`, scheme `{c.qat.scheme}`, bits {bits}, scale `{c.qat.scale}`, "
            f"{c.qat.epochs} epochs from " + ("the float model" if c.qat.init == "float" else "scratch")
            + " (PTQ: the float weights at the same bits, calibrated, not trained)",
            f"pruning ({pr.search} search): {budget}, then {pr.epochs} recovery epochs",
            f"noise-aware fine-tuning: σ_rel {ft.sigma:g}, {ft.epochs} epochs",
            f"crossbar: {', '.join(ev.devices)}; {ev.chips} chips each; DAC {ev.dac_bits} bits, ADC {ev.adc_bits} "
            f"bits; {ev.tile_rows}×{ev.tile_cols} tiles"]


def costs(metrics: dict[str, dict], energy: dict[str, float]) -> dict[str, dict[str, float]]:
    """model → {cost (a key of COSTS) → value}, in the order of MODELS; the fine-tuned model has the pruned model's
    masks and bits, so its proxies are the pruned model's."""
    qat, pruned = metrics["qat"], metrics["prune"]
    sources = {"float": (qat, "float/"), "PTQ": (qat, "ptq/"), "QAT": (qat, ""), "pruned": (pruned, ""),
               "fine-tuned": (pruned, "")}
    return {model: {**{key: source[f"{prefix}cost/{key}"] for key in COSTS if key != "energy_pj"},
                    "energy_pj": energy[model]} for model, (source, prefix) in sources.items()}


def accuracies(metrics: dict[str, dict]) -> dict[str, float]:
    return {"float": metrics["pretrain"]["test/acc"], "PTQ": metrics["qat"]["ptq/test/acc"],
            "QAT": metrics["qat"]["test/acc"], "pruned": metrics["prune"]["test/acc"],
            "fine-tuned": metrics["finetune"]["test/acc"]}


def headline(metrics: dict[str, dict]) -> dict[str, dict[str, float]]:
    """The few numbers a comparison of runs starts from (`dvc metrics show metrics/headline.json`)."""
    crossbar = metrics["crossbar"]
    return {"test_acc": {model.lower().replace("-", ""): value for model, value in accuracies(metrics).items()},
            "chip": {"acc_mean": crossbar["crossbar/acc_mean"], "acc_std": crossbar["crossbar/acc_std"],
                     "uj": crossbar["energy/pj_per_inference"] / 1e6, "vs_int8": crossbar["energy/ratio_int8"]}}


def layer_fractions(prune: dict) -> dict[str, dict[str, float]]:
    """{"layer0": {"structured": f, "unstructured": f, "mixing": f}, ...} from the prune metrics."""
    fractions: dict[str, dict[str, float]] = {}
    for key, value in prune.items():
        found = re.fullmatch(r"pruned/(layer\d+)/(\w+)_frac", key)
        if found:
            fractions.setdefault(found[1], {})[found[2]] = value
    return dict(sorted(fractions.items(), key=lambda item: int(item[0][5:])))


def crossbar_curves(crossbar: dict, times: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{device: {time: {"mean", "std", "min"}}} from the flat crossbar metrics, times in the order given."""
    curves: dict = {}
    for key, value in crossbar.items():
        found = re.fullmatch(r"crossbar/([^/]+)/([^/]+)/acc_(mean|std|min)", key)
        if found:
            curves.setdefault(found[1], {}).setdefault(found[2], {})[found[3]] = value
    return {device: {t: curve[t] for t in times} for device, curve in curves.items()}


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; None shows as –, numbers ≥ 1000 with thousands separators, other floats to 4 digits."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows])


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def _chips(point: dict[str, float]) -> str:
    return f"{_percent(point['mean'])} ± {100 * point['std']:.1f} ({_percent(point['min'])})"


def markdown(inputs: ReportInputs, plots: str = "../plots") -> str:
    m = inputs.metrics
    cost_table, acc = costs(m, inputs.energy), accuracies(m)
    lines = [f"# {inputs.title}", "", *(f"- {line}" for line in inputs.settings), "",
             "Test accuracy on the whole test split; costs per QS4D's proxies (ACE and ADC per time step) and energy "
             "per inference on the simulated chip.", "",
             "## From float to the fine-tuned model", "",
             table(["model", "test accuracy", *COSTS.values()],
                    [[model, _percent(acc[model]), *(cost_table[model][k] for k in COSTS)] for model in MODELS]), "",
             f"![costs]({plots}/costs.png)", ""]

    sweep = m.get("sweep_bits")
    if sweep:
        lines += ["## Bits per component (PTQ vs QAT)", "",
                  f"Each component quantized alone (`all`: every component), the rest in float "
                  f"({_percent(sweep['float'])}).", "",
                  table(["component", "bits", "PTQ", "QAT"],
                         [[c, w, _percent(r["ptq"]), _percent(r["qat"])]
                          for c in sorted(set(sweep) - {"float"}, key=("all", *COMPONENTS).index)
                          for w, r in sorted(sweep[c].items(), key=lambda item: -int(item[0]))]), "",
                  f"![bit sweep]({plots}/sweep_bits.png)", ""]

    fractions = layer_fractions(m["prune"])
    kinds = sorted({k for f in fractions.values() for k in f})
    lines += ["## Pruning", "", table(["layer", *kinds], [[layer, *(_percent(f.get(k, 0)) for k in kinds)]
                                                          for layer, f in fractions.items()]), "",
              f"![pruning]({plots}/pruning.png)", ""]

    noise = m["noise_robustness"]
    sigmas = sorted(next(iter(noise.values())), key=float)
    lines += ["## Accuracy under weight noise", "", "Mean ± std over noise draws, on the crossbar section's test "
              "sequences (`evaluate.test_samples`); σ_rel relative to max − min. Rows "
              "without a prefix: noise on every crossbar-mapped tensor (Ā, B̄, C, D); `paper/`: QS4D's protocol, the "
              "continuous A alone.", "",
              table(["model", *(f"σ {100 * float(s):g}%" for s in sigmas)],
                     [[name, *(f"{_percent(noise[name][s]['mean'])} ± {100 * noise[name][s]['std']:.1f}"
                               for s in sigmas)] for name in sorted(noise, key=noise_order)]), "",
              f"![noise robustness]({plots}/noise_robustness.png)", ""]

    crossbar = m["crossbar"]
    curves = crossbar_curves(crossbar, inputs.times)
    lines += ["## On simulated crossbars", "",
              f"The fine-tuned model on {crossbar['chips']} chips per device and the first {crossbar['test_samples']} "
              f"test sequences; mean ± std over chips (worst chip). In software the same model scores "
              f"{_percent(crossbar['software/acc'])} on these sequences ({_percent(acc['fine-tuned'])} on the whole "
              f"test split, as above). {crossbar['tiles']} tiles, {crossbar['cells']} cells.", "",
              table(["device", *inputs.times], [[device, *(_chips(p) for p in curve.values())]
                                          for device, curve in curves.items()]), "",
              f"![crossbar accuracy]({plots}/crossbar_accuracy.png)", "",
              f"Energy per inference {crossbar['energy/pj_per_inference'] / 1e3:.4g} nJ: digital int8 "
              f"÷{crossbar['energy/ratio_int8']:.2f}, digital fp32 ÷{crossbar['energy/ratio_fp32']:.2f}.", "",
              f"![energy]({plots}/energy.png)", ""]

    lines += ["## Accuracy vs energy", "",
              "Test accuracy vs energy per inference of each model of this run; ★ the fine-tuned model on the "
              "first device's chips. Other runs: `python -m pipeline.runs` (table, `--pareto FILE` for this plot "
              "over runs) or the MLflow UI.", "", f"![pareto]({plots}/pareto.png)", ""]
    return "\n".join(lines)


def model_points(metrics: dict[str, dict], energy: dict[str, float]) -> dict[str, tuple[float, float]]:
    """model → (energy per inference in pJ, test accuracy), with the crossbar result as "on chip" (the fine-tuned
    model on the chips)."""
    acc, crossbar = accuracies(metrics), metrics["crossbar"]
    return {**{model: (energy[model], acc[model]) for model in MODELS},
            "on chip": (crossbar["energy/pj_per_inference"], crossbar["crossbar/acc_mean"])}
