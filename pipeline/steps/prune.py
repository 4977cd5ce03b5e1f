"""The prune stage's work: prune a trained classifier on a held-out split, recover, report fractions and costs."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import Logger

from pipeline import stage, tracking
from pipeline.config import Config, PruneConfig
from pipeline.cost import LayerCounts, proxies
from pipeline.data import read_meta
from pipeline.data.datamodule import load_split
from pipeline.prune.masks import LayerMasks, attach_masks, fractions
from pipeline.prune.search import prune
from pipeline.training import ClassifierModule, fit

WORKDIR = Path("runs/prune")


def live_counts(module: ClassifierModule, layers: list[LayerMasks]) -> list[LayerCounts]:
    """Live entries per layer: state, the real entries of Ā (Re, Im) and c, those of C, outside pruned modes (a
    pruned mode removes 2 of each); the mixing term stays H²-scaled."""
    counts = []
    for block, m in zip(module.model.blocks, layers):
        channels = block.ssm.D.numel()
        counts.append(LayerCounts(state=int(m.live("A_bar").sum()), c=int(m.live("C").sum()),
                                  mix=round(channels * channels * float(m.mix.keep.mean())), channels=channels))
    return counts


def pruned_copy(module: ClassifierModule) -> ClassifierModule:
    """`module` with all-ones masks attached (its quantizers, if any, kept)."""
    return module.rebuilt(pruned=True)


def prune_and_recover(module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
                      settings: PruneConfig | None = None,
                      logger: Logger | None = None) -> tuple[ClassifierModule, dict]:
    settings = settings or config.prune
    pruned = pruned_copy(module)  # on the module's device: the search runs there
    if settings.select_on == "test":
        print("prune: selecting on the TEST set (QS4D's choice, a reproduction only: the test accuracy reported "
              "after pruning is biased upwards)", flush=True)
    x_val, y_val = load_split(data_dir, settings.select_on).tensors
    search = prune(pruned.model, x_val, y_val, pruned.eval_mode, settings.criterion_tolerance(),
                   settings.granularities(), settings.criterion, settings.search, settings.chunks)
    pruned, metrics = fit(pruned, config, settings, data_dir, workdir, logger)
    layers = attach_masks(pruned.model)
    meta = read_meta(data_dir)
    cost = proxies(live_counts(pruned, layers), meta["d_in"], meta["n_classes"], pruned.bits)
    metrics |= {f"search/{k}": search[k] for k in ("baseline_val_acc", "val_acc", "baseline_val_loss", "val_loss")}
    metrics |= fractions(layers) | {f"cost/{k}": v for k, v in cost.items()}
    return pruned, metrics


def run(config: Config, data: Path, model: Path, out: Path, metrics: Path) -> None:
    """The `prune` stage: prune the QAT model on a held-out split, recover → its checkpoint and metrics."""
    with tracking.stage_run(config, "prune") as tracked:
        module = ClassifierModule.load(model)
        pruned, values = prune_and_recover(module, config, data, WORKDIR, logger=tracked.lightning_logger())
        stage.publish(tracked, pruned, values, data, WORKDIR, out, metrics)
        print(f"prune ({config.prune.criterion}): structured {values['pruned/structured_frac']:.1%}, unstructured "
              f"{values['pruned/unstructured_frac']:.1%}, mixing {values['pruned/mixing_frac']:.1%}; "
              f"test/acc {values['test/acc']:.4f}")
