"""Sweep `mixed_precision`: greedy per-component bit descent from the float model → a metrics file (the accepted
path, every round's candidates, the final bits) and a plot. Every candidate is an MLflow run nested under this
stage's run. Run with `dvc repro sweeps/dvc.yaml:mixed_precision`."""
import json
import shutil
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.plots import plot_bit_descent
from pipeline.steps.mixed_precision import search
from pipeline.training import ClassifierModule

WORKDIR = Path("runs/mixed_precision")


def main(config: Config, data: Path, float_model: Path, metrics: Path, plot: Path) -> None:
    with tracking.stage_run(config, "mixed_precision") as run:
        def log_candidate(bits: dict, values: dict) -> None:
            with run.child("-".join(f"{c}{w}" for c, w in bits.items()), {f"bits.{c}": w for c, w in bits.items()}) \
                    as candidate:
                candidate.log_metrics(values)

        float_module = ClassifierModule.load_from_checkpoint(float_model, map_location="cpu")
        result = search(float_module, config, data, WORKDIR, log_candidate)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        final = result["final"]
        run.log_metrics({"final/val_acc": final["val_acc"], "final/test_acc": final["test_acc"],
                         f"final/cost/{result['cost']}": final["cost"], "final/cost_reduction": final["cost_reduction"],
                         "rounds": len(result["rounds"])})
        run.log_artifact(stage.write_metrics(metrics, result))
        run.log_artifact(plot_bit_descent(result, plot))
    print(f"mixed precision: {json.dumps(final['bits'])}; val/acc {final['val_acc']:.4f}, test/acc "
          f"{final['test_acc']:.4f}; {result['cost']} ÷{final['cost_reduction']:.2f} from the start "
          f"(use it: dvc exp run -S 'qat.bits={json.dumps({**result['fixed'], **final['bits']})}')")


if __name__ == "__main__":
    stage.run(main, "data", "float_model", "metrics", "plot")
