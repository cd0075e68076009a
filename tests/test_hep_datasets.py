"""HDF5 round trips with the config kept beside the arrays, refusal of another config, ROOT images."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ninr.data import DATASETS, load_dataset
from ninr.errors import DataError
from ninr.hep.calorimeter import simulate
from ninr.hep.config import DetectorConfig, GenerationConfig, config_hash
from ninr.hep.events import concat, toy_candidates

HAS_H5PY = importlib.util.find_spec("h5py") is not None
HAS_UPROOT = importlib.util.find_spec("uproot") is not None
needs_h5py = pytest.mark.skipif(not HAS_H5PY, reason="h5py not installed (pip install 'ninr[hep]')")
needs_uproot = pytest.mark.skipif(not HAS_UPROOT, reason="uproot not installed (pip install 'ninr[hep]')")


def test_select_and_concat_keep_the_ragged_particles() -> None:
    c = toy_candidates(6)
    picked = c.select([4, 1])
    np.testing.assert_array_equal(picked.label, c.label[[4, 1]])
    assert picked.num_particles.tolist() == [c.num_particles[4], c.num_particles[1]]
    np.testing.assert_array_equal(picked.p_e[: picked.num_particles[0]], c.p_e[c.offsets[4] : c.offsets[5]])
    both = concat([c.select([0, 1]), c.select([2, 3, 4, 5])])
    for name, arr in c.arrays().items():
        np.testing.assert_array_equal(both.arrays()[name], arr, err_msg=name)


@needs_h5py
def test_hdf5_round_trip_keeps_arrays_and_config(tmp_path: Path) -> None:
    from ninr.hep.datasets import read_events, write_events

    c = toy_candidates(10)
    cfg = GenerationConfig(n_signal_events=10, seed=3, common_settings=("PartonLevel:MPI = off",))
    write_events(tmp_path / "ev.h5", c, cfg, {"events_per_s": 12.5})
    back, stored, meta = read_events(tmp_path / "ev.h5", expected=cfg)
    for name, arr in c.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], arr, err_msg=name)
        assert back.arrays()[name].dtype == arr.dtype
    assert GenerationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}) == cfg
    assert meta == {"events_per_s": 12.5}
    assert not (tmp_path / "ev.h5.tmp").exists()  # written atomically


@needs_h5py
def test_a_file_written_with_another_config_is_not_silently_reused(tmp_path: Path) -> None:
    from ninr.hep.datasets import load_or_generate, read_events, write_events

    path = tmp_path / "ev.h5"
    cfg = GenerationConfig(n_signal_events=10)
    write_events(path, toy_candidates(4), cfg)
    other = dataclasses.replace(cfg, photon_pt_min_gev=25.0)
    with pytest.raises(DataError, match=r"different config \(differs in photon_pt_min_gev: 20.0 -> 25.0\)"):
        read_events(path, expected=other)
    with pytest.raises(DataError, match="different config"):
        load_or_generate(path, other)  # refuses before generating anything
    candidates, meta = load_or_generate(path, cfg)  # the same config is reused
    assert len(candidates) == 4 and meta["reused"] is True


@needs_h5py
def test_images_file_keeps_the_detector_config(tmp_path: Path) -> None:
    from ninr.hep.datasets import EVENTS_KIND, IMAGES_KIND, read_h5, write_h5

    det = DetectorConfig(em_cells=8, had_cells=2)
    x = simulate(toy_candidates(5), det, generator=torch.Generator().manual_seed(0)).numpy()
    write_h5(tmp_path / "img.h5", IMAGES_KIND, {"x": x, "y": np.arange(5)}, det)
    arrays, stored, _ = read_h5(tmp_path / "img.h5", IMAGES_KIND, expected=det)
    np.testing.assert_array_equal(arrays["x"], x)
    assert stored["em_cells"] == 8
    with pytest.raises(DataError, match="is not a ninr-hep-events file"):
        read_h5(tmp_path / "img.h5", EVENTS_KIND)
    with pytest.raises(DataError, match="no such file"):
        read_h5(tmp_path / "missing.h5", IMAGES_KIND)


def test_config_hash_tracks_every_field() -> None:
    assert config_hash(DetectorConfig()) == config_hash(DetectorConfig())
    assert config_hash(DetectorConfig()) != config_hash(DetectorConfig(em_cell_noise_gev=0.031))


@needs_uproot
def test_root_images_round_trip_and_upsample_like_the_simulation(tmp_path: Path) -> None:
    from ninr.hep.datasets import read_root_images, stack_layers, write_root_images

    rng = np.random.default_rng(0)
    em, had = rng.random((7, 16, 16)).astype(np.float32), rng.random((7, 4, 4)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1, 0, 0])
    write_root_images(tmp_path / "cells.root", em, had, labels)
    x, y = read_root_images(tmp_path / "cells.root")
    assert x.shape == (7, 2, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0], torch.from_numpy(em))
    torch.testing.assert_close(x[:, 1].sum(dim=(1, 2)), torch.from_numpy(had).sum(dim=(1, 2)))
    torch.testing.assert_close(x, stack_layers(em, had))
    assert y.tolist() == labels.tolist() and y.dtype == torch.int64
    with pytest.raises(DataError, match="cannot read tree 'cells'"):
        read_root_images(tmp_path / "cells.root", tree="cells")
    with pytest.raises(DataError, match="not 3x3"):
        read_root_images(tmp_path / "cells.root", had_shape=(3, 3))


def test_stack_layers_matches_the_calorimeter_output() -> None:
    from ninr.hep.datasets import stack_layers

    det = DetectorConfig(em_cells=16, had_cells=4)
    img = simulate(toy_candidates(3), det, generator=torch.Generator().manual_seed(1))
    coarse = img[:, 1].reshape(3, 4, 4, 4, 4).sum(dim=(2, 4))  # fine cells summed back into coarse cells
    torch.testing.assert_close(stack_layers(img[:, 0], coarse), img)


@needs_h5py
def test_hep_photons_is_a_registered_dataset_ninr_trains_on(tmp_path: Path) -> None:
    from ninr.hep.datasets import write_events

    assert "hep-photons" in DATASETS
    write_events(tmp_path / "ev.h5", toy_candidates(20), GenerationConfig())
    data = load_dataset(
        "hep-photons",
        path=str(tmp_path / "ev.h5"),
        detector={"em_cells": 8, "had_cells": 2},
        test_on="data",
        test_fraction=0.25,
    )
    assert data.input_shape == (2, 8, 8) and data.num_classes == 2
    assert len(data.x_train) == 15 and len(data.x_test) == 5
    assert set(data.y_train.tolist()) <= {0, 1}
