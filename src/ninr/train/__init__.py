"""Training: configs, the SGD fit loop, callbacks, run directories, stacked multi-run training."""

from ninr.train.callbacks import Callback, EpochPrinter, FitState
from ninr.train.config import MethodSpec, TrainConfig, run_id
from ninr.train.loop import evaluate, fit
from ninr.train.run import TrainResult, build_setup, load_run, resolve, train
from ninr.train.stacked import group_stackable, train_many, train_stacked

__all__ = [
    "Callback",
    "EpochPrinter",
    "FitState",
    "MethodSpec",
    "TrainConfig",
    "TrainResult",
    "build_setup",
    "evaluate",
    "fit",
    "group_stackable",
    "load_run",
    "resolve",
    "run_id",
    "train",
    "train_many",
    "train_stacked",
]
