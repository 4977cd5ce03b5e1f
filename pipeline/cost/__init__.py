"""Hardware-cost proxies (and, later, the energy model)."""
from pipeline.cost.proxies import LayerCounts, dense_layers, model_proxies, proxies, widths

__all__ = ["LayerCounts", "dense_layers", "model_proxies", "proxies", "widths"]
