"""Regression gate: the default run's metrics against a committed baseline, within committed tolerances.

    python -m pipeline.gate            # table of gated metrics; exit 1 if one got worse beyond its tolerance
    python -m pipeline.gate --update   # take the current metrics as the new baseline (then commit it)

`regression/tolerances.yaml` lists the gated metrics: file, key, which direction is better, and the allowed
worsening (absolute, or relative to the baseline with `relative: true`). `regression/baseline.json` holds the
baseline values, keyed "<file>:<key>".
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

TOLERANCES, BASELINE = Path("regression/tolerances.yaml"), Path("regression/baseline.json")


@dataclass(frozen=True)
class Gate:
    file: str
    key: str
    better: str  # "higher" | "lower"
    tolerance: float
    relative: bool = False

    @property
    def name(self) -> str:
        return f"{self.file}:{self.key}"

    def allowed(self, baseline: float) -> float:
        return self.tolerance * abs(baseline) if self.relative else self.tolerance

    def worsening(self, baseline: float, current: float) -> float:
        return baseline - current if self.better == "higher" else current - baseline


def read_gates(path: Path = TOLERANCES) -> list[Gate]:
    gates = [Gate(**entry) for entry in yaml.safe_load(path.read_text())["gates"]]
    for gate in gates:
        if gate.better not in ("higher", "lower") or gate.tolerance < 0:
            raise ValueError(f"{path}: {gate.name}: better must be 'higher' or 'lower' and tolerance ≥ 0")
    return gates


def current(gates: list[Gate], root: Path = Path(".")) -> dict[str, float]:
    values = {}
    for gate in gates:
        metrics = json.loads((root / gate.file).read_text())
        if gate.key not in metrics:
            raise KeyError(f"{gate.file} has no metric {gate.key!r}")
        values[gate.name] = float(metrics[gate.key])
    return values


def check(gates: list[Gate], baseline: dict[str, float], now: dict[str, float]) -> tuple[list[str], str]:
    """(names of the gates that failed, a markdown table of every gate)."""
    failed, rows = [], ["| metric | baseline | now | worse by | allowed | |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for gate in gates:
        if gate.name not in baseline:
            failed.append(gate.name)
            rows.append(f"| {gate.name} | — | {now[gate.name]:.6g} | | | no baseline: python -m pipeline.gate --update |")
            continue
        base, value = baseline[gate.name], now[gate.name]
        worse, allowed = gate.worsening(base, value), gate.allowed(base)
        ok = worse <= allowed
        failed += [] if ok else [gate.name]
        rows.append(f"| {gate.name} | {base:.6g} | {value:.6g} | {worse:.3g} | {allowed:.3g} | {'ok' if ok else 'FAIL'} |")
    return failed, "\n".join(rows)


def main(argv: list[str] | None = None, root: Path = Path(".")) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="write the current metrics as the baseline")
    args = parser.parse_args(argv)
    gates = read_gates(root / TOLERANCES)
    now = current(gates, root)
    if args.update:
        (root / BASELINE).write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
        print(f"baseline updated: {root / BASELINE} ({len(now)} metrics); commit it")
        return 0
    failed, table = check(gates, json.loads((root / BASELINE).read_text()), now)
    print(table)
    if failed:
        print(f"regression gate FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("regression gate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
