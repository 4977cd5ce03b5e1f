"""Stage `prepare`: the data set named in params.yaml → the prepared folder (DatasetDict + meta.json), metrics."""
from pipeline import stage
from pipeline.steps import prepare

if __name__ == "__main__":
    stage.run(prepare.run, "out", "metrics")
