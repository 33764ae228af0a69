"""The one training loop shared by every recipe: `Trainer(model, TrainConfig(...), out_dir, loader, ...).fit()`."""

from toolkit.train.checkpoint import average_checkpoints, latest_checkpoint, list_checkpoints
from toolkit.train.config import TrainConfig
from toolkit.train.trainer import Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer", "average_checkpoints", "latest_checkpoint", "list_checkpoints"]
