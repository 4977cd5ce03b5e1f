"""Stage `finetune`: noise-aware fine-tuning of the pruned model → its checkpoint and metrics, and the robustness
curve of the float, QAT and fine-tuned models → a metrics file and a plot."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_noise_robustness
from pipeline.steps.finetune import finetune, robustness
from pipeline.training import ClassifierModule

WORKDIR = Path("runs/finetune")


def main(config: Config, data: Path, model: Path, float_model: Path, qat_model: Path, out: Path, metrics: Path,
         robustness_metrics: Path, plot: Path) -> None:
    settings = config.finetune
    with tracking.stage_run(config, "finetune") as run:
        pruned = ClassifierModule.load_from_checkpoint(model, map_location="cpu")
        tuned, values = finetune(pruned, config, data, WORKDIR, sink=run.log_metrics)
        x, y = load_split(data, "test").tensors
        models = {name: ClassifierModule.load_from_checkpoint(p, map_location="cpu")
                  for name, p in {"float": float_model, "qat": qat_model}.items()}
        curves = {name: robustness(m, x, y, settings.eval_sigmas, settings.draws, config.seed)
                  for name, m in {**models, "finetuned": tuned}.items()}
        for name, curve in curves.items():
            values |= {f"noise/{name}/sigma_{s}/{k}": v for s, point in curve.items() for k, v in point.items()}
        stage.publish(run, tuned, values, data, WORKDIR, out, metrics)
        run.log_artifact(stage.write_metrics(robustness_metrics, curves))
        run.log_artifact(plot_noise_robustness(curves, plot))
        worst = f"{max(settings.eval_sigmas):g}"
        print(f"finetune (σ_rel {settings.sigma:g}): noise-free test/acc {values['test/acc']:.4f}; at σ_rel {worst}: "
              + ", ".join(f"{n} {c[worst]['mean']:.4f}±{c[worst]['std']:.4f}" for n, c in curves.items()))


if __name__ == "__main__":
    stage.run(main, "data", "model", "float_model", "qat_model", "out", "metrics", "robustness_metrics", "plot")
