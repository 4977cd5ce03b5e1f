import json
import shutil

from pipeline import gate

from conftest import ROOT


def committed_copy(tmp_path):
    """The repository's gate files and committed metrics, in tmp_path."""
    shutil.copytree(ROOT / "regression", tmp_path / "regression")
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    return tmp_path


def plant(root, name, key, change):
    """Set metric `key` of metrics/<name>.json to change(its baseline value)."""
    baseline = json.loads((root / "regression" / "baseline.json").read_text())[f"metrics/{name}.json:{key}"]
    path = root / "metrics" / f"{name}.json"
    metrics = json.loads(path.read_text())
    metrics[key] = change(baseline)
    path.write_text(json.dumps(metrics))


def test_committed_metrics_pass_the_committed_gate(tmp_path):
    assert gate.main([], root=committed_copy(tmp_path)) == 0


def test_gate_fails_on_a_planted_accuracy_drop_and_energy_rise(tmp_path, capsys):
    root = committed_copy(tmp_path)
    plant(root, "qat", "test/acc", lambda v: v - 0.005)  # within 1 pp: passes
    assert gate.main([], root=root) == 0
    plant(root, "qat", "test/acc", lambda v: v - 0.02)
    assert gate.main([], root=root) == 1
    assert "metrics/qat.json:test/acc" in capsys.readouterr().err
    plant(root, "qat", "test/acc", lambda v: v + 0.1)  # better than the baseline: passes
    assert gate.main([], root=root) == 0
    energy = next(g for g in gate.read_gates(root / gate.TOLERANCES) if g.key == "energy/pj_per_inference")
    assert energy.relative
    plant(root, "crossbar", "energy/pj_per_inference", lambda v: v * (1 + 0.9 * energy.tolerance))
    assert gate.main([], root=root) == 0
    plant(root, "crossbar", "energy/pj_per_inference", lambda v: v * (1 + 1.1 * energy.tolerance))
    assert gate.main([], root=root) == 1


def test_update_takes_the_current_metrics_as_baseline(tmp_path):
    root = committed_copy(tmp_path)
    plant(root, "prune", "test/acc", lambda v: v - 0.2)
    assert gate.main([], root=root) == 1
    assert gate.main(["--update"], root=root) == 0
    assert gate.main([], root=root) == 0
