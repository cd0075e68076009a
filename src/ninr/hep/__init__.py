"""Prompt against non-prompt photons: Pythia 8 events, a fast calorimeter, ResNet18 with and without NINR.

``import ninr.hep`` registers the structured noise distributions ``correlated`` and ``pileup``
(:mod:`ninr.hep.noise`) and the data set ``hep-photons``; the ``ninr`` command line imports it for
``ninr hep ...``. Pythia 8, h5py and uproot are imported only when used (the ``hep`` extra).

Entry points: :func:`prepare_data` and :func:`train_one` (the ``hep`` study part runs them per method and seed),
:func:`load_study_config`,
:func:`ninr.hep.generate.generate`, :func:`ninr.hep.calorimeter.simulate`; :mod:`ninr.hep.gun` (:class:`GunConfig`)
shoots single photons against pi0/eta -> gamma gamma instead of generating Pythia events.
"""

from ninr.hep import datasets as _datasets  # noqa: F401  (registers the hep-photons data set)
from ninr.hep import noise as _noise  # noqa: F401  (registers the correlated and pileup distributions)
from ninr.hep.config import DetectorConfig, DetectorShift, GenerationConfig, apply_shift
from ninr.hep.gun import GunConfig
from ninr.hep.study import MethodEntry, StudyConfig, load_study_config, prepare_data, train_one

__all__ = [
    "DetectorConfig",
    "DetectorShift",
    "GenerationConfig",
    "GunConfig",
    "MethodEntry",
    "StudyConfig",
    "apply_shift",
    "load_study_config",
    "prepare_data",
    "train_one",
]
