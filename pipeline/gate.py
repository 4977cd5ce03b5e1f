"""Statistical tier of the regression gate: the default chain's metrics against a band measured over seeds.

    python -m pipeline.gate                      # table of gated metrics; exit 1 if one is outside its band
    python -m pipeline.gate --band seeds.json    # take the band of `benchmarks/chain_seeds.py` (then commit it)

A trained chain moves with its seed and with the CPU's rounding (another CPU trains another model), so its
metrics are judged against what seeds do, not against one run. `regression/tolerances.yaml` lists the gated
metrics (file, key, which direction is better) and the false-alarm rate α per metric; `regression/band.json`
holds each metric's mean, sample standard deviation s and number of seeds n. A metric fails when it is worse
than the mean by more than

    margin = t(1 − α; n − 1) · s · √(1 + 1/n)

the one-sided prediction bound of a new run from the same normal distribution (Student's t), so a chain that
behaves like the seeds fails with probability α per metric. Code changes that move a number are caught by the
exact tier (`python -m pipeline.exact`), which needs no training.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from scipy.stats import t as student_t

TOLERANCES, BAND = Path("regression/tolerances.yaml"), Path("regression/band.json")


@dataclass(frozen=True)
class Gate:
    file: str
    key: str
    better: str  # "higher" | "lower"

    @property
    def name(self) -> str:
        return f"{self.file}:{self.key}"

    def worsening(self, reference: float, current: float) -> float:
        return reference - current if self.better == "higher" else current - reference


def read_gates(path: Path = TOLERANCES) -> tuple[list[Gate], float]:
    """(the gated metrics, the false-alarm rate α per metric)."""
    raw = yaml.safe_load(path.read_text())
    gates = [Gate(**entry) for entry in raw["gates"]]
    alpha = raw.get("false_alarm")
    for gate in gates:
        if gate.better not in ("higher", "lower"):
            raise ValueError(f"{path}: {gate.name}: better = {gate.better!r}; allowed 'higher' or 'lower'")
    if not isinstance(alpha, float) or not 0 < alpha < 0.5:
        raise ValueError(f"{path}: false_alarm = {alpha!r}; allowed a number in (0, 0.5)")
    return gates, alpha


def margin(std: float, n: int, alpha: float) -> float:
    """How much worse than the band's mean a run may be: t(1 − α; n − 1)·s·√(1 + 1/n)."""
    if n < 2:
        raise ValueError(f"a band needs ≥ 2 runs, got n = {n}")
    return float(student_t.ppf(1 - alpha, n - 1)) * std * math.sqrt(1 + 1 / n)


def current(gates: list[Gate], root: Path = Path(".")) -> dict[str, float]:
    values = {}
    for gate in gates:
        metrics = json.loads((root / gate.file).read_text())
        if gate.key not in metrics:
            raise KeyError(f"{gate.file} has no metric {gate.key!r}")
        values[gate.name] = float(metrics[gate.key])
    return values


def check(gates: list[Gate], alpha: float, band: dict[str, dict], now: dict[str, float]) -> tuple[list[str], str]:
    """(names of the gates that failed, a markdown table of every gate)."""
    failed = []
    rows = ["| metric | band mean ± s (n) | now | worse by | allowed | |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for gate in gates:
        if gate.name not in band:
            failed.append(gate.name)
            rows.append(f"| {gate.name} | — | {now[gate.name]:.6g} | | | no band: python -m pipeline.gate --band |")
            continue
        b, value = band[gate.name], now[gate.name]
        worse, allowed = gate.worsening(b["mean"], value), margin(b["std"], b["n"], alpha)
        ok = worse <= allowed
        failed += [] if ok else [gate.name]
        rows.append(f"| {gate.name} | {b['mean']:.6g} ± {b['std']:.3g} ({b['n']}) | {value:.6g} | {worse:.3g} | "
                    f"{allowed:.3g} | {'ok' if ok else 'FAIL'} |")
    return failed, "\n".join(rows)


def main(argv: list[str] | None = None, root: Path = Path(".")) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--band", type=Path, help="a benchmarks/chain_seeds.py result: write its band as the new one")
    args = parser.parse_args(argv)
    gates, alpha = read_gates(root / TOLERANCES)
    if args.band:
        measured = json.loads(args.band.read_text())
        missing = [g.name for g in gates if g.name not in measured["band"]]
        if missing:
            raise SystemExit(f"{args.band}: no values for {missing}")
        band = {"command": measured["command"], "date": measured["date"], "cpu": measured["cpu"],
                "torch": measured["torch"], "band": {g.name: measured["band"][g.name] for g in gates}}
        (root / BAND).write_text(json.dumps(band, indent=2) + "\n")
        print(f"band updated: {root / BAND} ({len(gates)} metrics, n = {min(b['n'] for b in band['band'].values())}); "
              "commit it")
        return 0
    failed, table = check(gates, alpha, json.loads((root / BAND).read_text())["band"], current(gates, root))
    print(table)
    if failed:
        print(f"regression gate FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"regression gate passed (false-alarm rate {alpha:g} per metric)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
