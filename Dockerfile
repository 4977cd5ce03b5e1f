# The same environment as the README's set-up command (exact versions from requirements.lock; torch's CPU build);
# the container runs the default pipeline.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /project
COPY . .
RUN python3 -m venv .venv && . .venv/bin/activate && pip install --no-cache-dir \
    --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.lock -e .
ENV PATH=/project/.venv/bin:$PATH \
    HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
CMD ["dvc", "repro"]
