"""The regression gate's two tiers, on fixtures (never on the metrics of this machine's last run)."""
import json
import math

import pytest
from conftest import ROOT
from scipy.stats import t as student_t

from pipeline import exact, gate

GATES = [("pretrain", "test/acc", "higher"), ("crossbar", "crossbar/acc_mean", "higher"),
         ("crossbar", "energy/pj_per_inference", "lower")]
BAND = {"metrics/pretrain.json:test/acc": {"mean": 0.97, "std": 0.002, "n": 5},
        "metrics/crossbar.json:crossbar/acc_mean": {"mean": 0.80, "std": 0.004, "n": 5},
        "metrics/crossbar.json:energy/pj_per_inference": {"mean": 2.0e6, "std": 4.0e4, "n": 5}}


@pytest.fixture
def root(tmp_path):
    """A project folder with a gate of three metrics, a band, and metrics at the band's means."""
    (tmp_path / "regression").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / gate.TOLERANCES).write_text(json.dumps(
        {"false_alarm": 0.002, "gates": [{"file": f"metrics/{f}.json", "key": k, "better": b} for f, k, b in GATES]}))
    (tmp_path / gate.BAND).write_text(json.dumps({"band": BAND}))
    for name in ("pretrain", "crossbar"):
        values = {k.split(":")[1]: b["mean"] for k, b in BAND.items() if k.startswith(f"metrics/{name}.json")}
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(values))
    return tmp_path


def plant(root, name, key, change):
    path = root / "metrics" / f"{name}.json"
    metrics = json.loads(path.read_text())
    metrics[key] = change(metrics[key])
    path.write_text(json.dumps(metrics))


def test_margin_is_the_one_sided_prediction_bound():
    # t(0.99; 4) = 3.7469 (tables); √(1 + 1/5) = 1.0954
    assert gate.margin(0.01, 5, 0.01) == pytest.approx(3.7469 * 0.01 * 1.0954, rel=1e-4)
    with pytest.raises(ValueError, match="n = 1"):
        gate.margin(0.01, 1, 0.01)


def test_a_run_like_the_seeds_passes_and_one_past_the_margin_fails(root, capsys):
    assert gate.main([], root=root) == 0
    allowed = gate.margin(0.004, 5, 0.002)
    plant(root, "crossbar", "crossbar/acc_mean", lambda v: v - 0.99 * allowed)
    assert gate.main([], root=root) == 0
    plant(root, "crossbar", "crossbar/acc_mean", lambda v: v - 0.02 * allowed)
    assert gate.main([], root=root) == 1
    assert "crossbar/acc_mean" in capsys.readouterr().err
    plant(root, "crossbar", "crossbar/acc_mean", lambda v: v + 0.5)  # better than the band: passes
    assert gate.main([], root=root) == 0


def test_planted_accuracy_drop_and_energy_rise_fail(root):
    plant(root, "pretrain", "test/acc", lambda v: v - 0.02)  # 2 pp
    assert gate.main([], root=root) == 1
    plant(root, "pretrain", "test/acc", lambda v: v + 0.02)
    assert gate.main([], root=root) == 0
    plant(root, "crossbar", "energy/pj_per_inference", lambda v: v * 1.2)  # +20%
    assert gate.main([], root=root) == 1


def test_band_is_taken_from_a_seeds_result(root):
    plant(root, "pretrain", "test/acc", lambda v: v - 0.05)
    assert gate.main([], root=root) == 1
    runs = {"command": "chain_seeds", "date": "2026-12-03", "cpu": "x", "torch": "2",
            "band": {**BAND, "metrics/pretrain.json:test/acc": {"mean": 0.92, "std": 0.002, "n": 5}}}
    (root / "seeds.json").write_text(json.dumps(runs))
    assert gate.main(["--band", str(root / "seeds.json")], root=root) == 0
    assert gate.main([], root=root) == 0


def test_committed_gate_is_consistent():
    gates, alpha = gate.read_gates(ROOT / gate.TOLERANCES)
    band = json.loads((ROOT / gate.BAND).read_text())["band"]
    assert {g.name for g in gates} == set(band) and 0 < alpha < 0.05
    assert all(b["n"] >= 5 and b["std"] > 0 for b in band.values())
    n = band[gates[0].name]["n"]
    assert gate.margin(1.0, n, alpha) == pytest.approx(student_t.ppf(1 - alpha, n - 1) * math.sqrt(1 + 1 / n))


def test_bad_tolerances_are_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("false_alarm: 0.7\ngates: []\n")
    with pytest.raises(ValueError, match="false_alarm = 0.7"):
        gate.read_gates(path)
    path.write_text("false_alarm: 0.01\ngates: [{file: m.json, key: k, better: up}]\n")
    with pytest.raises(ValueError, match="better = 'up'"):
        gate.read_gates(path)


def test_exact_tier_flags_any_moved_value_and_nothing_else():
    expected = json.loads((ROOT / exact.EXPECTED).read_text())["values"]
    assert exact.compare(expected, dict(expected)) == []
    rounding = {k: v * (1 + 1e-7) for k, v in expected.items()}
    assert exact.compare(expected, rounding) == []
    acc = "crossbar/rram/1s/mean"
    problems = exact.compare(expected, {**expected, acc: expected[acc] - 0.02})  # a 2 pp drop
    assert len(problems) == 1 and problems[0].startswith(acc)
    one_sample = 1 / exact.SLICE["test"]  # a chip's accuracy with one sequence flipped passes
    assert exact.compare(expected, {**expected, acc: expected[acc] - one_sample}) == []
    assert exact.compare(expected, {**expected, acc: expected[acc] - 2 * one_sample})[0].startswith(acc)
    noise = "noise/0.05/mean"  # elsewhere one sample moves a value far beyond the relative tolerance
    assert exact.compare(expected, {**expected, noise: expected[noise] - 1 / exact.SLICE["test"]})[0].startswith(noise)
    energy = "energy/pj_per_inference"
    assert exact.compare(expected, {**expected, energy: expected[energy] * 1.2})[0].startswith(energy)
    assert "missing" in exact.compare(expected, {k: v for k, v in expected.items() if k != acc})[0]


def test_exact_tier_inputs_are_those_the_expected_values_were_made_from():
    assert json.loads((ROOT / exact.EXPECTED).read_text())["inputs_sha256"] == exact.fingerprint(ROOT / exact.FOLDER)
    assert sum(p.stat().st_size for p in (ROOT / exact.FOLDER).iterdir()) < 1_000_000
