"""Stage `finetune`: noise-aware fine-tuning of the pruned model → models/finetune.ckpt, and the robustness
curve of the float, QAT and fine-tuned models → metrics/finetune.json, metrics/noise_robustness.json, a plot."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.analog.robustness import finetune, robustness
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_noise_robustness
from pipeline.training import ClassifierModule

DATA, WORKDIR, OUT = Path("data/prepared"), Path("runs/finetune"), Path("models/finetune.ckpt")
COMPARED = {"float": Path("models/pretrain.ckpt"), "qat": Path("models/qat.ckpt")}
PLOT = Path("plots/noise_robustness.png")


def main(config: Config) -> None:
    settings = config.finetune
    with tracking.stage_run(config, "finetune") as run:
        pruned = ClassifierModule.load_from_checkpoint("models/prune.ckpt", map_location="cpu")
        tuned, metrics = finetune(pruned, config, DATA, WORKDIR, sink=run.log_metrics)
        x, y = load_split(DATA, "test").tensors
        models = {name: ClassifierModule.load_from_checkpoint(p, map_location="cpu") for name, p in COMPARED.items()}
        curves = {name: robustness(m, x, y, settings.eval_sigmas, settings.draws, config.seed)
                  for name, m in {**models, "finetuned": tuned}.items()}
        for name, curve in curves.items():
            metrics |= {f"noise/{name}/sigma_{s}/{k}": v for s, point in curve.items() for k, v in point.items()}
        stage.publish(run, "finetune", metrics, WORKDIR, OUT)
        run.log_artifact(stage.write_metrics("noise_robustness", curves))
        run.log_artifact(plot_noise_robustness(curves, PLOT))
        worst = f"{max(settings.eval_sigmas):g}"
        print(f"finetune (σ_rel {settings.sigma:g}): noise-free test/acc {metrics['test/acc']:.4f}; at σ_rel {worst}: "
              + ", ".join(f"{n} {c[worst]['mean']:.4f}±{c[worst]['std']:.4f}" for n, c in curves.items()))


if __name__ == "__main__":
    stage.run(main)
