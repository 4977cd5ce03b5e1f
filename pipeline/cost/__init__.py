"""Hardware cost: QS4D's proxies (proxies.py) and the energy model with its cited tables (energy.py)."""
from pipeline.cost.proxies import LayerCounts, dense_layers, model_proxies, proxies, widths

__all__ = ["LayerCounts", "dense_layers", "model_proxies", "proxies", "widths"]
