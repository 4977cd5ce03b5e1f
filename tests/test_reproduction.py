"""The reproduction study's bookkeeping (benchmarks/reproduction.py, benchmarks/reproduction_report.py): the width
rule behind its verdicts, pieces cached and resumed, the aggregation over seeds and the cost reductions."""
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import reproduction  # noqa: E402
import reproduction_report  # noqa: E402

from pipeline.cost import model_proxies  # noqa: E402


def test_smallest_width_is_where_every_wider_width_stays_within_tolerance():
    reference = 0.90
    sweep = {("A", 10): 0.905, ("A", 8): 0.899, ("A", 6): 0.850, ("A", 4): 0.898,  # 4 passes, 6 does not
             ("C", 10): 0.80, ("C", 8): 0.90,  # the widest fails: C stays float
             ("mix", 10): 0.9, ("mix", 8): 0.8975, ("mix", 6): 0.8969}  # 0.3 pp: 0.8975 in, 0.8969 out
    assert reproduction.smallest_widths(sweep, reference) == {"A": 8, "C": None, "mix": 8}
    assert reproduction.smallest_widths(sweep, reference, tolerance=0.11) == {"A": 4, "C": 8, "mix": 6}


def _study(tmp_path: Path, deadline: float) -> reproduction.Study:
    task = reproduction.TASKS["digits"]
    return reproduction.Study(task, None, tmp_path / "digits" / "s0", tmp_path / "prepared", deadline, "cpu")


def test_pieces_are_computed_once_and_read_back(tmp_path):
    calls = []
    study = _study(tmp_path, time.monotonic() + 60)
    first = study.piece("sweep/A4", lambda bits: calls.append(bits) or {"test/acc": 0.5}, 4)
    again = study.piece("sweep/A4", lambda bits: calls.append(bits) or {"test/acc": 0.9}, 4)
    assert calls == [4] and first["test/acc"] == again["test/acc"] == 0.5
    assert json.loads((tmp_path / "digits/s0/sweep/A4.json").read_text())["test/acc"] == 0.5
    assert study.read("sweep/A4")["test/acc"] == 0.5


def test_no_piece_starts_after_the_budget_but_finished_ones_are_read(tmp_path):
    _study(tmp_path, time.monotonic() + 60).piece("float", lambda: {"test/acc": 0.7})
    late = _study(tmp_path, time.monotonic() - 1)
    assert late.piece("float", lambda: {"test/acc": 0.0})["test/acc"] == 0.7
    with pytest.raises(reproduction.OutOfTime):
        late.piece("sweep/all4", lambda: {"test/acc": 0.0})
    assert not (tmp_path / "digits/s0/sweep/all4.json").exists()


def _write(folder: Path, name: str, value: dict) -> None:
    path = folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def test_report_aggregates_seeds_and_reduces_costs_at_each_seeds_widths(tmp_path):
    task = reproduction.Task("presets/digits.yaml", ("model.n_layers=1", "model.d_model=16", "model.d_state=8"),
                             components=("all",), bits=(4, 8))
    for seed, (acc8, acc4) in enumerate(((0.95, 0.80), (0.949, 0.948))):
        folder = tmp_path / "t" / f"s{seed}"
        _write(folder, "float", {"test/acc": 0.95})
        _write(folder, "sweep/all8", {"test/acc": acc8, "ptq/test/acc": acc8})
        _write(folder, "sweep/all4", {"test/acc": acc4, "ptq/test/acc": 0.1})
    seeds = reproduction_report.load(tmp_path, "t")
    assert list(seeds) == ["s0", "s1"] and seeds["s1"]["sweep/all4"]["test/acc"] == 0.948
    assert reproduction_report.collect(seeds, "sweep/all4", "test/acc") == [0.80, 0.948]
    assert reproduction_report.fmt([0.5, 0.7]) == "60.0 ± 14.1 (n=2)"

    row = reproduction_report.cost_rows("t", task, seeds)[0]
    assert "all 8 / all 8; all 8 / all 4" in row  # seed 0 keeps QAT at 8 bits, seed 1 at 4
    float_cost, ptq = model_proxies(1, 16, 8, 1, 10, {}), model_proxies(1, 16, 8, 1, 10, {"all": 8})
    qat4 = model_proxies(1, 16, 8, 1, 10, {"all": 4})
    ratios = [float_cost["ace"] / ptq["ace"], float_cost["ace"] / qat4["ace"]]  # seed 0 and seed 1, float → QAT
    assert f"**{reproduction_report.fmt(ratios, 1)}**" in row


def test_size_grid_takes_the_tasks_own_size_from_its_sweep_and_others_from_the_size_pieces(tmp_path):
    task = reproduction.Task("presets/digits.yaml", ("model.d_model=16", "model.d_state=8"), sizes=((4, 16),))
    folder = tmp_path / "t" / "s0"
    _write(folder, "float", {"test/acc": 0.9})
    _write(folder, "sweep/all8", {"test/acc": 0.85})
    _write(folder, "size/N4H16/float", {"test/acc": 0.8})
    _write(folder, "size/N4H16/all8", {"test/acc": 0.7})
    lines, grid, own = reproduction_report.size_table("t", task, reproduction_report.load(tmp_path, "t"))
    assert own == (8, 16) and sorted(grid) == [(4, 16), (8, 16)]
    assert grid[8, 16]["float"] == [0.9] and grid[8, 16][8] == [0.85] and grid[4, 16][8] == [0.7]
    assert grid[4, 16][6] == [] and "| 4 | 16 | 80.0 ± 0.0 (n=1) |" in "\n".join(lines)


def test_noise_training_is_shown_beside_the_same_noise_without_training(tmp_path):
    folder = tmp_path / "t" / "s0"
    for model in ("float", "all8"):
        _write(folder, f"noise/train/{model}/0.01", {"curve": {"0.01": {"mean": 0.9, "std": 0, "min": 0.9}}})
    tested = {("paper", "float"): {"0.01": [0.6]}}
    lines, curves = reproduction_report.noise_training_table("t", reproduction_report.load(tmp_path, "t"), tested)
    assert curves["float"]["0.01"] == [0.9] and curves["all8"]["0.02"] == []
    assert "| float | 90.0 ± 0.0 (n=1) (60.0 ± 0.0 (n=1)) |" in "\n".join(lines)
