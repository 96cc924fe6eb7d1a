"""Where training metrics go besides `metrics.jsonl` (always written): TensorBoard and MLflow.

Both are optional installs (`pip install 'dsft[tracking]'`); asking for one that is missing is a
clear error before training starts. MLflow logs to `MLFLOW_TRACKING_URI` when set, else to
`RUN/mlruns` (a local file store, which MLflow 3 allows behind MLFLOW_ALLOW_FILE_STORE), with the resolved config as run parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from dsft.errors import UserError

SINKS = ("tensorboard", "mlflow")


class Sink(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    def __init__(self, run: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("report_to tensorboard needs the tensorboard package",
                            "pip install tensorboard (or dsft[tracking])") from None
        self.writer = SummaryWriter(str(run / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, run: Path, params: dict[str, object]):
        try:
            import mlflow
        except ImportError:
            raise UserError("report_to mlflow needs mlflow", "pip install mlflow-skinny (or dsft[tracking])") from None
        import os

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # A local file store needs no server or database; MLflow 3 deprecates it behind this opt-in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((run / "mlruns").resolve().as_uri())
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run.name)
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def open_sinks(names: list[str], run: Path, params: dict[str, object]) -> list[Sink]:
    sinks: list[Sink] = []
    for name in names:
        sinks.append(TensorBoard(run) if name == "tensorboard" else MLflow(run, params))
    return sinks
