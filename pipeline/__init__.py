"""QS4D pipeline: S4D models from float training to quantized, pruned, analog-deployed inference."""
import os

# The pipeline never reaches a hub or telemetry service unless the user asks for it explicitly
# (e.g. `HF_HUB_OFFLINE=0 dvc repro` for a hub data set).
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_key, _value)
