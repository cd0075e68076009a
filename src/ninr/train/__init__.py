"""Training: configs, the one fit loop and its backends (one model, K stacked), callbacks, run directories."""

from ninr.train.callbacks import Callback, EpochPrinter, FitState
from ninr.train.config import PER_RUN, MethodSpec, TrainConfig, run_id
from ninr.train.fit import evaluate, fit
from ninr.train.run import TrainResult, load_run, train, train_many, train_stacked
from ninr.train.setup import build_setup, prepare_run, resolve, versions
from ninr.train.stacking import group_stackable

__all__ = [
    "PER_RUN",
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
    "prepare_run",
    "resolve",
    "run_id",
    "train",
    "train_many",
    "train_stacked",
    "versions",
]
