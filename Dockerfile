# The same environment as the README's set-up command (exact versions from requirements.lock; torch's CPU build);
# the container runs the default pipeline. The environment lives in /opt/venv, so the project folder can be
# bind-mounted over /project and the run's outputs land in the host's checkout (README, "Docker").
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /project
COPY . .
RUN python3 -m venv /opt/venv && . /opt/venv/bin/activate && pip install --no-cache-dir \
    --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.lock -e .
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
CMD ["dvc", "repro"]
