"""The photon study's pieces: train on "simulation", test on "simulation" and on "data", for one method and seed.

A :class:`StudyConfig` (from TOML by :func:`load_study_config`, :mod:`ninr.hep.studyconfig`) says how events
are generated, imaged through the "simulation" detector and the shifted "data" detector, and trained on.
:func:`prepare_data` makes the three image sets; :func:`train_one` trains one method with one seed and
returns one record per test set with the AUC, the background rejection 1/eps_B at each signal efficiency
and the ROC curve on a grid. The ``hep`` study part (:mod:`ninr.studies.parts.hep`) runs every method x seed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ninr.data.base import Dataset
from ninr.hep import metrics
from ninr.hep.config import DetectorConfig, apply_shift, config_hash, shift_effects
from ninr.hep.datasets import images_for, load_or_generate, photon_dataset, read_root_images, split_indices
from ninr.hep.events import ORIGIN_NAMES, Candidates
from ninr.hep.generate import generate
from ninr.hep.studyconfig import (
    DEFAULT_METHODS,
    MethodEntry,
    RootInputs,
    StudyConfig,
    load_study_config,
    study_config_from_dict,
)
from ninr.rng import derive_seed
from ninr.train import MethodSpec, TrainConfig, train

__all__ = [
    "DEFAULT_METHODS",
    "MethodEntry",
    "RootInputs",
    "StudyConfig",
    "StudyData",
    "load_study_config",
    "prepare_data",
    "study_config_from_dict",
    "train_one",
]

ROC_GRID = tuple(np.round(np.linspace(0.05, 1.0, 20), 4).tolist())
Progress = Callable[[str], None]


@dataclass
class StudyData:
    """Training set with its "simulation" test split, the "data" test set, and further test sets by name
    (``extra_test_sets``: images and labels; with :attr:`StudyConfig.single_effect_tests`, one per shift effect)."""

    dataset: Dataset
    x_data: torch.Tensor
    y_data: torch.Tensor
    info: dict[str, Any]
    extra_test_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)


def effect_test_set(effect: str) -> str:
    """The name of the test set with one shift effect alone: ``"data: <effect> only"``."""
    return f"data: {effect} only"


def normalised(images: torch.Tensor, mode: str) -> torch.Tensor:
    """``images`` (N, C, H, W) as :attr:`StudyConfig.normalise` says: unchanged (``"none"``), or each divided by
    its total energy over every channel (``"energy"``; an image with no positive total is left at zero)."""
    if mode == "none":
        return images
    total = images.sum(dim=tuple(range(1, images.dim())), keepdim=True)
    return torch.where(total > 0, images / total.clamp_min(torch.finfo(images.dtype).tiny), torch.zeros_like(images))


def prepare_data(
    config: StudyConfig,
    *,
    out_dir: str | Path | None = None,
    overwrite_events: bool = False,
    progress: Progress | None = None,
) -> StudyData:
    """Images and labels of the three sets: train and test through "simulation", test through "data".

    With ``config.single_effect_tests``, also one test set per effect of the shift
    (:func:`ninr.hep.config.shift_effects`), named by :func:`effect_test_set`: the test events through the
    "simulation" detector changed by that effect alone, imaged with the "simulation" test set's generator stream.
    An effect that leaves the number of random draws unchanged (every one but pileup) then meets the very draws of
    the "simulation" test images, so the difference between the two sets is the effect and nothing else.
    """
    say = progress or (lambda _msg: None)
    if config.root is not None:
        return _root_data(config, say)
    events_path = Path(config.events) if config.events else (Path(out_dir) / "events.h5" if out_dir else None)
    if events_path is not None:
        candidates, meta = load_or_generate(
            events_path, config.generation, workers=config.workers, overwrite=overwrite_events
        )
    else:
        candidates, stats = generate(config.generation, workers=config.workers)
        meta = {**stats.__dict__, "events_per_s": stats.events_per_s, "reused": False}
    say(_generation_line(meta, events_path))
    if config.exclude_origins:
        dropped = np.isin(candidates.origin, [ORIGIN_NAMES.index(o) for o in config.exclude_origins])
        candidates = candidates.select(np.flatnonzero(~dropped))
        say(f"dropped {int(dropped.sum())} candidate(s) of origin {', '.join(config.exclude_origins)}")
    train_idx, test_idx = split_indices(len(candidates), config.test_fraction, config.split_seed)
    train, test = candidates.select(train_idx), candidates.select(test_idx)
    data_detector = apply_shift(config.simulation, config.shift)
    started = time.perf_counter()
    x_train, x_sim, x_data = (
        normalised(images_for(part, detector, config.calo_seed, stream), config.normalise)
        for part, detector, stream in (
            (train, config.simulation, "simulation-train"),
            (test, config.simulation, "simulation-test"),
            (test, data_detector, "data-test"),
        )
    )
    effects = _effect_images(config, test) if config.single_effect_tests else {}
    calo_s = time.perf_counter() - started
    y_train, y_test = (torch.from_numpy(c.label.astype(np.int64)) for c in (train, test))
    info = {
        "generation": meta,
        "calorimeter_s": calo_s,
        "n_train": len(train),
        "n_test": len(test),
        "signal_fraction_train": float(y_train.float().mean()) if len(train) else float("nan"),
        "events_hash": config_hash(config.generation),
        "simulation_hash": config_hash(config.simulation),
        "data_hash": config_hash(data_detector),
    }
    if effects:
        info["effect_detectors"] = {name: config_hash(det) for name, (det, _) in effects.items()}
    say(f"images: {len(train)} train, {len(test)} test per detector, {x_train.shape[1:]} each, {calo_s:.1f}s")
    extra = {name: (x, y_test) for name, (_, x) in effects.items()}
    return StudyData(photon_dataset(x_train, y_train, x_sim, y_test), x_data, y_test, info, extra)


def _effect_images(config: StudyConfig, test: Candidates) -> dict[str, tuple[DetectorConfig, torch.Tensor]]:
    """Per shift effect: its detector and the test images through it (the "simulation" test stream)."""
    out = {}
    for effect, shift in shift_effects(config.simulation, config.shift).items():
        detector = apply_shift(config.simulation, shift)
        images = images_for(test, detector, config.calo_seed, "simulation-test")
        out[effect_test_set(effect)] = (detector, normalised(images, config.normalise))
    return out


def _root_data(config: StudyConfig, say: Progress) -> StudyData:
    assert config.root is not None
    r = config.root
    x_sim, y_sim = read_root_images(
        r.simulation, tree=r.tree, em_branch=r.em_branch, had_branch=r.had_branch, label_branch=r.label_branch
    )
    x_data, y_data = read_root_images(
        r.data, tree=r.tree, em_branch=r.em_branch, had_branch=r.had_branch, label_branch=r.label_branch
    )
    x_sim, x_data = normalised(x_sim, config.normalise), normalised(x_data, config.normalise)
    train_idx, test_idx = split_indices(len(x_sim), config.test_fraction, config.split_seed)
    ti, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    say(f"ROOT images: {len(x_sim)} simulation ({len(ti)} train), {len(x_data)} data")
    dataset = photon_dataset(x_sim[ti], y_sim[ti], x_sim[te], y_sim[te])
    return StudyData(dataset, x_data, y_data, {"root": dataclasses.asdict(r), "n_train": len(ti)})


def _generation_line(meta: Mapping[str, Any], path: Path | None) -> str:
    if meta.get("reused"):
        return f"events: reusing {path} (generated at {meta.get('events_per_s', float('nan')):.1f} events/s)"
    return (
        f"events: generated {sum(meta.get('events', {}).values())} in {meta.get('wall_s', 0):.1f}s "
        f"({meta.get('events_per_s', float('nan')):.1f} events/s, {meta.get('workers')} workers)"
        + (f", written to {path}" if path else "")
    )


@torch.no_grad()
def scores(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> np.ndarray:
    """Signal score of each image: the logit difference prompt - non-prompt, in eval mode (noise off)."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i : i + batch_size].to(device)).double() for i in range(0, len(x), batch_size)]
    logits = torch.cat(out) if out else torch.zeros((0, 2), dtype=torch.float64)
    return (logits[:, 1] - logits[:, 0]).cpu().numpy()


BOOTSTRAP_SEED = 0
"""Root of the bootstrap streams: a test set's resamples come from ``derive_seed(BOOTSTRAP_SEED, "bootstrap",
name)``, the same for every method and training seed, so the replicates of two runs on one test set resample the
same events (replicate ``b`` of a mean over seeds is the mean of the runs' replicates ``b``)."""

REPLICATE_DIGITS = 7
"""Decimals kept of each stored replicate eps_B (in [0, 1]): a rounding of 5e-8 at most, far below the 1/n_bkg
step of an eps_B, while each value stays short in the JSON records."""


def bootstrap_generator(test_set: str) -> np.random.Generator:
    """The generator of ``test_set``'s bootstrap resamples (:data:`BOOTSTRAP_SEED`)."""
    return np.random.default_rng(derive_seed(BOOTSTRAP_SEED, "bootstrap", test_set))


def evaluate_scores(
    s: np.ndarray,
    y: np.ndarray,
    efficiencies: tuple[float, ...],
    *,
    test_set: str = "",
    replicates: int = metrics.BOOTSTRAP_REPLICATES,
) -> dict[str, Any]:
    """AUC, eps_B and rejection at each signal efficiency with bootstrap intervals, and the ROC on :data:`ROC_GRID`.

    Per working point ``P`` (percent): ``bkg_eff@P``, ``rejection@P``, the stratified bootstrap percentile
    interval ``rejection_lo@P`` / ``rejection_hi@P`` at :data:`ninr.hep.metrics.CONFIDENCE` over ``replicates``
    resamples of the test events (:func:`ninr.hep.metrics.bootstrap_background_efficiency`, seeded by
    :func:`bootstrap_generator` of ``test_set``) and the replicates themselves, ``bootstrap_bkg_eff@P``, so a
    report can form intervals of means over seeds and of paired differences. ``bootstrap`` records how.
    """
    y = np.asarray(y)
    counts = {"n_test": len(y), "n_signal": int(y.sum()), "n_background": int(len(y) - y.sum())}
    if not np.all(np.isfinite(s)):
        nan = float("nan")
        return {**counts, "auc": nan, **{f"rejection@{round(e * 100)}": nan for e in efficiencies}, "roc_bkg_eff": []}
    out: dict[str, Any] = {**counts, "auc": metrics.auc(s, y)}
    boot = metrics.bootstrap_background_efficiency(
        s, y, efficiencies, replicates=replicates, generator=bootstrap_generator(test_set)
    )
    for j, e in enumerate(efficiencies):
        p = round(e * 100)
        eb = metrics.background_efficiency(s, y, e)
        out[f"bkg_eff@{p}"] = eb
        out[f"rejection@{p}"] = metrics.rejection(eb)
        out[f"rejection_lo@{p}"], out[f"rejection_hi@{p}"] = metrics.rejection_interval(boot[:, j])
        out[f"bootstrap_bkg_eff@{p}"] = np.round(boot[:, j], REPLICATE_DIGITS).tolist()
    out["bootstrap"] = {
        "replicates": replicates,
        "confidence": metrics.CONFIDENCE,
        "interval": "percentile",
        "resampling": "stratified: signal and background events drawn with replacement, class counts kept",
        "seed": derive_seed(BOOTSTRAP_SEED, "bootstrap", test_set),
    }
    out["roc_signal_eff"] = list(ROC_GRID)
    out["roc_bkg_eff"] = metrics.roc_on_grid(s, y, ROC_GRID)
    return out


def train_config(config: StudyConfig, entry: MethodEntry, seed: int, data: StudyData) -> TrainConfig:
    """The :class:`~ninr.train.TrainConfig` of one run; its dataset kwargs identify the images (hashes)."""
    methods = () if entry.name == "none" else (MethodSpec(entry.name, dict(entry.params)),)
    ident = {k: v for k, v in data.info.items() if k.endswith("hash") or k == "root"}
    return TrainConfig(
        dataset=data.dataset.name,
        dataset_kwargs=ident,
        model=config.model,
        model_kwargs=dict(config.model_kwargs),
        methods=methods,
        lr=config.lr,
        momentum=config.momentum,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=seed,
        device=config.device,
    )


def evaluation_sets(data: StudyData) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The test sets a run is scored on, by name, in report order: ``"simulation"`` (held out), ``"data"`` (the
    same events through the shifted detector), then the further sets of :attr:`StudyData.extra_test_sets` (for
    example one shift effect at a time) in their order. Each becomes one record."""
    sets = {"simulation": (data.dataset.x_test, data.dataset.y_test), "data": (data.x_data, data.y_data)}
    for name, (x, y) in data.extra_test_sets.items():
        sets.setdefault(str(name), (x, y))
    return sets


def train_one(
    config: StudyConfig, entry: MethodEntry, seed: int, data: StudyData, *, out: Path | None = None
) -> list[dict[str, Any]]:
    """Train one method with one seed and evaluate it on every test set (:func:`evaluation_sets`): one record each.

    Records hold what the run computed (no wall-clock time); with ``out``, the run directory is
    ``out/runs/<label>-seed<seed>``.
    """
    run_dir = out / "runs" / f"{entry.label}-seed{seed}" if out is not None else None
    result = train(train_config(config, entry, seed, data), data=data.dataset, out_dir=run_dir, overwrite=True)
    rows = []
    for test_set, (x, y) in evaluation_sets(data).items():
        yn = y.numpy()
        rows.append(
            {
                "study": "hep-photons",
                "method": entry.label,
                "method_name": entry.name,
                "params": dict(entry.params),
                "seed": seed,
                "test_set": test_set,
                "train_run_id": result.run_id,
                "status": result.status,
                "efficiencies": list(config.signal_efficiencies),
                "epochs": len(result.records),
                "final_train_loss": result.final.get("train_loss"),
                **evaluate_scores(scores(result.model, x), yn, config.signal_efficiencies, test_set=test_set),
            }
        )
    return rows
