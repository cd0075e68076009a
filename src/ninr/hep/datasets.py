"""Photon data on disk (HDF5 with its config, ROOT cell images) and as a :class:`ninr.data.Dataset`.

HDF5 layout (``h5py``): arrays as datasets at the root of the file, and attributes ``kind``
(``"ninr-hep-events"`` or ``"ninr-hep-images"``), ``format_version``, ``config`` (the JSON of the config
that produced the arrays), ``config_hash`` and ``meta`` (JSON: generation statistics, versions). A
reader given the config it expects refuses a file written with another one and names the fields that
differ, so a cached set is reused exactly when it is what the caller would generate.

ROOT layout (read with ``uproot``): one TTree (default ``photons``), one entry per candidate, with
branches ``em`` (float[H*W], the EM layer, row-major: eta index slow, phi fast), ``had`` (float[h*w],
the HAD layer) and ``label`` (int: 1 prompt photon, 0 background), energies in GeV. Fixed-size arrays
(``std::array<float, N>`` / ``float[N]``) and variable-size ones of constant length are both accepted;
square layers are assumed unless shapes are given. The HAD layer is upsampled to the EM grid exactly as
:func:`ninr.hep.calorimeter.simulate` does, so a model trained on simulated images reads these directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ninr.data.base import DATASETS, Dataset
from ninr.errors import DataError, check_choice, check_probability
from ninr.hep import deps
from ninr.hep.calorimeter import simulate
from ninr.hep.config import (
    DetectorConfig,
    DetectorShift,
    GenerationConfig,
    apply_shift,
    config_hash,
    from_mapping,
    to_dict,
)
from ninr.hep.events import Candidates, from_arrays
from ninr.hep.generate import GenerationStats, JobResult, generate
from ninr.hep.gun import GunConfig
from ninr.hep.shards import (
    TARGETS,
    ShardStore,
    atomic_h5,
    refuse_changed,
    shards_dir,
    store_config,
    write_arrays,
)
from ninr.rng import make_generator
from ninr.version import __version__

FORMAT_VERSION = 1
EVENTS_KIND = "ninr-hep-events"
IMAGES_KIND = "ninr-hep-images"
CLASSES = ("non-prompt photon", "prompt photon")


def write_h5(path: str | Path, kind: str, arrays: Mapping[str, np.ndarray], config: Any, meta: Any = None) -> Path:
    """Write ``arrays`` and the config that made them to ``path`` atomically (:func:`ninr.hep.shards.atomic_h5`)."""
    path = Path(path)
    with atomic_h5(path) as f:
        write_arrays(f, arrays)
        f.attrs["kind"] = kind
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = json.dumps(to_dict(config), sort_keys=True)
        f.attrs["config_hash"] = config_hash(config)
        f.attrs["meta"] = json.dumps(meta or {}, sort_keys=True, default=str)
        f.attrs["ninr_version"] = __version__
    return path


def read_h5(
    path: str | Path, kind: str, expected: Any = None
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Arrays, stored config (dict) and meta of a file written by :func:`write_h5`.

    Raises:
        DataError: the file is missing, of another kind or format, or (given ``expected``) was written
            with a different config; the message names the differing fields.
    """
    h5py = deps.h5py()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != kind or int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise DataError(
                f"{path} is not a {kind} file of format {FORMAT_VERSION} "
                f"(kind {f.attrs.get('kind')!r}, format {f.attrs.get('format_version')!r})"
            )
        stored = json.loads(f.attrs["config"])
        if expected is not None and f.attrs["config_hash"] != config_hash(expected):
            diff = config_diff(stored, to_dict(expected))
            raise DataError(
                f"{path} was written with a different config (differs in {', '.join(diff) or 'format'}); "
                "it is not reused: pass another path, or delete it / use --overwrite to regenerate"
            )
        arrays = {name: f[name][()] for name in f}
        meta = json.loads(f.attrs.get("meta", "{}"))
    return arrays, stored, meta


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ between two config dicts, as ``key: a -> b``."""
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def write_events(path: str | Path, candidates: Candidates, config: Any, meta: Any = None) -> Path:
    """Write generated candidates with their generation config."""
    return write_h5(path, EVENTS_KIND, candidates.arrays(), config, meta)


def read_events(path: str | Path, expected: Any = None) -> tuple[Candidates, dict[str, Any], dict[str, Any]]:
    """Candidates, stored generation config (dict) and meta; ``expected`` as in :func:`read_h5`."""
    arrays, stored, meta = read_h5(path, EVENTS_KIND, expected)
    return from_arrays(arrays), stored, meta


def load_or_generate(
    path: str | Path,
    config: Any,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
) -> tuple[Candidates, dict[str, Any]]:
    """Reuse the events at ``path`` if they were generated with ``config``; else generate and write them.

    Pythia events are generated through the shard store beside ``path`` (:func:`generate_sharded`), so an
    interrupted generation resumes from its finished jobs. A file generated with another config raises
    :class:`DataError` unless ``overwrite``, which also starts the shard store afresh.
    """

    path = Path(path)
    if path.exists() and not overwrite:
        candidates, _, meta = read_events(path, expected=config)
        return candidates, {**meta, "reused": True}
    if isinstance(config, GunConfig):
        candidates, stats = generate(config, workers=workers, progress=progress)
        meta = {**stats.__dict__, "events_per_s": stats.events_per_s}
        write_events(path, candidates, config, meta)
        return candidates, {**meta, "reused": False}
    candidates, meta = generate_sharded(path, config, workers=workers, overwrite=overwrite, progress=progress)
    return candidates, {**meta, "reused": False}


def check_events_file(path: str | Path, config: GenerationConfig) -> bool:
    """Whether the events file at ``path`` holds exactly ``config``'s data set (``False`` if it is missing or
    has other event targets).

    Raises:
        ConfigError: the file was generated with another config in anything but the event targets; the
            message names the setting, the file's value and the given one.
    """
    path = Path(path)
    if not path.exists():
        return False
    _, stored, _ = read_h5(path, EVENTS_KIND)
    refuse_changed(
        {k: v for k, v in stored.items() if k not in TARGETS},
        store_config(config),
        f"{path} was generated with",
        "use another --out or --events, or --overwrite to regenerate",
    )
    return bool(stored == to_dict(config))


def generate_sharded(
    path: str | Path,
    config: GenerationConfig,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[JobResult, int, int], None] | None = None,
) -> tuple[Candidates, dict[str, Any]]:
    """Grow the shard store beside ``path`` (:func:`ninr.hep.shards.shards_dir`) to ``config``'s target and
    write the data set, assembled from complete shards only, to ``path`` (atomically).

    Returns:
        The candidates and the meta written with them: the data set's counts over its shards (``events``,
        ``candidates``, ``prompt`` per process, ``shards``, their ``seeds``, summed ``stage_s``), and this
        run's ``wall_s``, ``workers``, ``events_per_s`` (events generated now per second of wall time, NaN if
        every shard was reused), ``generated_shards`` and ``reused_shards``.

    Raises:
        ConfigError: the store or the file at ``path`` holds another config (see :meth:`ShardStore.check`).
    """
    store = ShardStore(shards_dir(path))
    if overwrite:
        store.clear()
    store.check(config)
    if not overwrite:
        check_events_file(path, config)
    report = store.grow(config, workers=workers, progress=progress)
    candidates, meta = store.load(config)
    stats: GenerationStats = report.stats
    meta |= {
        "wall_s": stats.wall_s,
        "workers": workers,
        "events_per_s": stats.events_per_s if report.generated else float("nan"),
        "generated_shards": report.generated,
        "reused_shards": report.reused,
        "generated_now": {"events": stats.events, "candidates": stats.candidates, "prompt": stats.prompt},
    }
    write_events(path, candidates, config, meta)
    return candidates, meta


def read_root_images(
    path: str | Path,
    *,
    tree: str = "photons",
    em_branch: str = "em",
    had_branch: str = "had",
    label_branch: str = "label",
    em_shape: tuple[int, int] | None = None,
    had_shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell images and labels from a ROOT file with the branch layout of this module's docstring.

    Returns:
        float32 images ``(N, 2, H, W)`` on the EM grid and int64 labels ``(N,)``.
    """
    uproot = deps.uproot()
    try:
        with uproot.open(path) as f:
            data = f[tree].arrays([em_branch, had_branch, label_branch], library="np")
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"cannot read tree {tree!r} with branches {em_branch}, {had_branch}, {label_branch} from {path}: {exc}"
        ) from exc
    em = _layer(data[em_branch], em_shape, em_branch)
    had = _layer(data[had_branch], had_shape, had_branch)
    labels = np.asarray(data[label_branch]).astype(np.int64)
    return stack_layers(em, had), torch.from_numpy(labels)


def write_root_images(
    path: str | Path, images_em: np.ndarray, images_had: np.ndarray, labels: np.ndarray, *, tree: str = "photons"
) -> Path:
    """Write cell images in the layout :func:`read_root_images` reads (for exchanging data, and tests)."""
    uproot = deps.uproot()
    with uproot.recreate(path) as f:
        f[tree] = {
            "em": np.asarray(images_em, dtype=np.float32).reshape(len(images_em), -1),
            "had": np.asarray(images_had, dtype=np.float32).reshape(len(images_had), -1),
            "label": np.asarray(labels, dtype=np.int32),
        }
    return Path(path)


def _layer(values: np.ndarray, shape: tuple[int, int] | None, branch: str) -> np.ndarray:
    arr = np.stack([np.asarray(v) for v in values]) if values.dtype == object else np.asarray(values)
    arr = arr.reshape(len(arr), -1).astype(np.float32)
    if shape is None:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise DataError(f"branch {branch!r} has {arr.shape[1]} cells per entry, not a square; give its shape")
        shape = (side, side)
    if shape[0] * shape[1] != arr.shape[1]:
        raise DataError(f"branch {branch!r} has {arr.shape[1]} cells per entry, not {shape[0]}x{shape[1]}")
    return arr.reshape(len(arr), *shape)


def stack_layers(em: np.ndarray | torch.Tensor, had: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Two-channel images on the EM grid: HAD upsampled by nearest neighbour, divided by the cell ratio."""
    em_t, had_t = torch.as_tensor(em, dtype=torch.float32), torch.as_tensor(had, dtype=torch.float32)
    (h, w), (hh, hw) = em_t.shape[-2:], had_t.shape[-2:]
    if h % hh or w % hw:
        raise DataError(f"the HAD grid {hh}x{hw} must divide the EM grid {h}x{w}")
    kh, kw = h // hh, w // hw
    up = had_t.repeat_interleave(kh, dim=-2).repeat_interleave(kw, dim=-1) / (kh * kw)
    return torch.stack([em_t, up], dim=1)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into train and test indices (test gets round(n * fraction))."""
    check_probability("test_fraction", test_fraction)
    perm = torch.randperm(n, generator=make_generator(seed, "hep-split")).numpy()
    n_test = round(n * test_fraction)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def photon_dataset(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    name: str = "hep-photons",
) -> Dataset:
    """A :class:`ninr.data.Dataset` of calorimeter images (GeV per cell, not [0, 1]: models standardise)."""
    return Dataset(
        name=name,
        x_train=x_train.float(),
        y_train=y_train.long(),
        x_test=x_test.float(),
        y_test=y_test.long(),
        classes=CLASSES,
    )


def images_for(candidates: Candidates, detector: DetectorConfig, seed: int, stream: str) -> torch.Tensor:
    """Images of ``candidates`` with a generator derived from ``(seed, stream)`` (e.g. ``"sim-train"``)."""
    return simulate(candidates, detector, generator=make_generator(seed, "calorimeter", stream))


@DATASETS.register("hep-photons")
def hep_photons(
    *,
    path: str,
    detector: Mapping[str, Any] | None = None,
    shift: Mapping[str, Any] | None = None,
    test_on: str = "simulation",
    test_fraction: float = 0.3,
    split_seed: int = 0,
    calo_seed: int = 0,
) -> Dataset:
    """Prompt against non-prompt photon candidates of an events HDF5 file, through the fast calorimeter.

    Args:
        path: events file written by ``ninr hep generate``.
        detector: ``DetectorConfig`` fields of the "simulation" detector (defaults otherwise).
        shift: ``DetectorShift`` fields defining the "data" detector.
        test_on: ``"simulation"`` or ``"data"``: which detector the test split is seen through.
        test_fraction: fraction of candidates held out for testing.
        split_seed: seed of the train/test split.
        calo_seed: seed of the calorimeter draws.
    """
    candidates, _, _ = read_events(path)
    det = from_mapping(DetectorConfig, detector or {}, "detector")
    check_choice("test_on", test_on, ("simulation", "data"))
    test_det = det if test_on == "simulation" else apply_shift(det, from_mapping(DetectorShift, shift or {}, "shift"))
    train_idx, test_idx = split_indices(len(candidates), test_fraction, split_seed)
    train, test = candidates.select(train_idx), candidates.select(test_idx)
    x_train = images_for(train, det, calo_seed, "simulation-train")
    x_test = images_for(test, test_det, calo_seed, f"{test_on}-test")
    return photon_dataset(
        x_train, torch.from_numpy(train.label.astype(np.int64)), x_test, torch.from_numpy(test.label.astype(np.int64))
    )
