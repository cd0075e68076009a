"""Tests of ninr.data: IDX parsing, Fashion-MNIST sources and verification, splits, synthetic data.

Every test except the one marked ``slow`` runs on small fake IDX files written to ``tmp_path`` with
their own checksums; HOME, the cache and the Debian directory are redirected and the network is
replaced by a function that fails the test.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ninr.data import (
    DATASETS,
    Dataset,
    fashion_mnist,
    load_dataset,
    load_fashion_mnist_raw,
    locate_fashion_mnist,
    read_idx,
    synthetic,
    write_idx,
)
from ninr.errors import ConfigError, DataError, UnknownNameError

# `ninr.data.fashion_mnist` as an attribute is the loader function; the module itself is here.
fm: ModuleType = importlib.import_module("ninr.data.fashion_mnist")

Arrays = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- helpers and fixtures


def fake_arrays(n_train: int = 300, n_test: int = 20, offset: int = 0) -> Arrays:
    """Small uint8 arrays in the Fashion-MNIST layout; image i encodes its index in two pixels."""

    def images(n: int, start: int) -> torch.Tensor:
        x = torch.zeros((n, 6, 5), dtype=torch.uint8)
        idx = torch.arange(start, start + n)
        x[:, 0, 0] = (idx % 256).to(torch.uint8)
        x[:, 0, 1] = (idx // 256).to(torch.uint8)
        x[:, 1:, :] = 255
        return x

    def labels(n: int) -> torch.Tensor:
        return ((torch.arange(n) + offset) % 10).to(torch.uint8)

    return {
        fm.TRAIN_IMAGES: images(n_train, offset),
        fm.TRAIN_LABELS: labels(n_train),
        fm.TEST_IMAGES: images(n_test, 10_000 + offset),
        fm.TEST_LABELS: labels(n_test),
    }


def gz_blobs(arrays: Arrays) -> dict[str, bytes]:
    """File name to gzip-compressed IDX bytes."""
    return {name: gzip.compress(write_idx(t)) for name, t in arrays.items()}


def checksums_of(arrays: Arrays) -> dict[str, str]:
    """File name to the sha256 of the decompressed IDX bytes."""
    return {name: hashlib.sha256(write_idx(t)).hexdigest() for name, t in arrays.items()}


def write_dir(directory: Path, arrays: Arrays) -> dict[str, str]:
    """Write the four .gz files into ``directory``; return their checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in gz_blobs(arrays).items():
        (directory / name).write_bytes(blob)
    return checksums_of(arrays)


class FakeServer:
    """A ``fetch`` function serving fixed bytes per file name and recording the URLs asked for."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.blobs[url.rsplit("/", 1)[-1]]


def _no_network(url: str) -> bytes:
    raise AssertionError(f"a test tried to download {url}")


@pytest.fixture(autouse=True)
def isolated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Redirect HOME, the caches and the Debian dir into tmp_path and forbid the network."""
    monkeypatch.setattr(fm, "_fetch_url", _no_network)
    fm._read_dir.cache_clear()
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.setenv("NINR_CACHE_DIR", str(tmp_path / "cache-root"))
        monkeypatch.delenv("NINR_DATA_DIR", raising=False)
        monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    yield
    fm._read_dir.cache_clear()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """The Fashion-MNIST cache directory the loader uses in these tests."""
    return tmp_path / "cache-root" / "fashion-mnist"


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 1, 3, 2)])
def test_idx_round_trip(shape: tuple[int, ...]) -> None:
    t = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    back = read_idx(write_idx(t), name="x")
    assert back.dtype == torch.uint8
    assert back.shape == t.shape
    assert torch.equal(back, t)
    back.add_(1)  # writable, no warning about a read-only buffer


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00", "4-byte magic"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05", "0x0d"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "expected 3 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "found 2"),
    ],
)
def test_read_idx_rejects_malformed(data: bytes, expected: str) -> None:
    with pytest.raises(DataError, match="my-file") as info:
        read_idx(data, name="my-file")
    assert expected in str(info.value)


def test_write_idx_rejects_other_dtypes() -> None:
    with pytest.raises(ConfigError, match="uint8"):
        write_idx(torch.zeros(3, dtype=torch.float32))


# ----------------------------------------------------------------------------- reading a directory


def test_load_from_data_dir(tmp_path: Path) -> None:
    arrays = fake_arrays()
    sums = write_dir(tmp_path / "fm", arrays)
    raw = load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)
    for got, name in zip(raw, fm.FILES, strict=True):
        assert got.dtype == torch.uint8
        assert torch.equal(got, arrays[name])
    ds = fashion_mnist(data_dir=tmp_path / "fm", checksums=sums)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (300, 1, 6, 5) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64 and ds.y_test.shape == (20,)
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) == 1.0
    assert torch.allclose(ds.x_test[:, 0] * 255, arrays[fm.TEST_IMAGES].float())
    assert ds.input_shape == (1, 6, 5)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.x_val is None and ds.y_val is None


def test_load_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    monkeypatch.setenv("NINR_DATA_DIR", str(tmp_path / "fm"))
    assert locate_fashion_mnist(checksums=sums) == tmp_path / "fm"
    assert load_dataset("fashion-mnist", checksums=sums).x_train.shape[0] == 300


def test_data_dir_argument_beats_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dir(tmp_path / "env", fake_arrays())
    sums = write_dir(tmp_path / "arg", fake_arrays(offset=3))
    monkeypatch.setenv("NINR_DATA_DIR", str(tmp_path / "env"))
    assert locate_fashion_mnist(tmp_path / "arg", checksums=sums) == tmp_path / "arg"
    assert int(load_fashion_mnist_raw(tmp_path / "arg", checksums=sums)[1][0]) == 3


def test_returned_raw_tensors_are_copies_and_reads_are_cached(tmp_path: Path) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    first = load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)
    first[0].zero_()
    second = load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)
    assert int(second[0].max()) == 255
    info = fm._read_dir.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)
    (tmp_path / "fm" / fm.TEST_LABELS).write_bytes(b"garbage that is not gzip")
    with pytest.raises(DataError, match=fm.TEST_LABELS):
        load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)


def test_checksums_must_cover_all_files(tmp_path: Path) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    del sums[fm.TEST_LABELS]
    with pytest.raises(ConfigError, match="`checksums` must be"):
        load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)


# ----------------------------------------------------------------------------- corrupted files


def _flip_byte(blob: bytes) -> bytes:
    mid = len(blob) // 2
    return blob[:mid] + bytes([blob[mid] ^ 0xFF]) + blob[mid + 1 :]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "flipped byte": _flip_byte,
    "truncated gzip": lambda blob: blob[: len(blob) // 2],
    "not gzip": lambda blob: b"<html>404</html>",
    "other content": lambda blob: gzip.compress(gzip.decompress(blob)[:-1] + b"\x07"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_file_in_data_dir_is_rejected(tmp_path: Path, corruption: str) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    write_dir(tmp_path / "debian", fake_arrays())  # a good copy elsewhere must not be used silently
    bad = tmp_path / "fm" / fm.TRAIN_IMAGES
    bad.write_bytes(CORRUPTIONS[corruption](bad.read_bytes()))
    with pytest.raises(DataError) as info:
        fashion_mnist(data_dir=tmp_path / "fm", checksums=sums)
    message = str(info.value)
    assert str(bad) in message
    assert "expected" in message and "found" in message


def test_checksum_mismatch_names_both_digests(tmp_path: Path) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    good = sums[fm.TRAIN_LABELS]
    sums[fm.TRAIN_LABELS] = "0" * 64
    with pytest.raises(DataError, match=fm.TRAIN_LABELS) as info:
        load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)
    assert "0" * 64 in str(info.value) and good in str(info.value)


@pytest.mark.parametrize(("where", "hint"), [("cache", "Delete"), ("debian", "apt-get install --reinstall")])
def test_corrupted_automatic_source_names_file_and_fix(tmp_path: Path, cache: Path, where: str, hint: str) -> None:
    directory = cache if where == "cache" else tmp_path / "debian"
    sums = write_dir(directory, fake_arrays())
    bad = directory / fm.TEST_IMAGES
    bad.write_bytes(bad.read_bytes()[:-9])
    with pytest.raises(DataError) as info:
        load_fashion_mnist_raw(checksums=sums)
    assert str(bad) in str(info.value)
    assert hint in str(info.value)


def test_wrong_label_range_is_rejected(tmp_path: Path) -> None:
    arrays = fake_arrays()
    arrays[fm.TRAIN_LABELS][0] = 10
    sums = write_dir(tmp_path / "fm", arrays)
    with pytest.raises(DataError, match=r"labels in \[0, 10\)"):
        load_fashion_mnist_raw(tmp_path / "fm", checksums=sums)


# ----------------------------------------------------------------------------- source order and download


def test_source_order(tmp_path: Path, cache: Path) -> None:
    sums = {}
    for directory in (tmp_path / "arg", tmp_path / "debian", cache):
        sums = write_dir(directory, fake_arrays())
    assert locate_fashion_mnist(tmp_path / "arg", checksums=sums) == tmp_path / "arg"
    assert locate_fashion_mnist(checksums=sums) == tmp_path / "debian"
    (tmp_path / "debian" / fm.TRAIN_LABELS).unlink()  # incomplete: does not count
    assert locate_fashion_mnist(checksums=sums) == cache
    with pytest.raises(DataError, match="nowhere cannot be used: no such directory"):  # a named directory, alone
        locate_fashion_mnist(tmp_path / "nowhere", checksums=sums)


def test_cache_location_follows_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NINR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fm.default_cache_dir() == tmp_path / "xdg" / "ninr" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fm.default_cache_dir() == tmp_path / "home" / ".cache" / "ninr" / "fashion-mnist"


def test_download_writes_verified_files_into_cache(tmp_path: Path, cache: Path) -> None:
    arrays = fake_arrays()
    server = FakeServer(gz_blobs(arrays))
    sums = checksums_of(arrays)
    assert locate_fashion_mnist(checksums=sums, fetch=server) == cache
    assert server.calls == [fm.BASE_URL + name for name in fm.FILES]
    assert sorted(p.name for p in cache.iterdir()) == sorted(fm.FILES)  # no temporary files left
    assert torch.equal(load_fashion_mnist_raw(checksums=sums, fetch=server)[0], arrays[fm.TRAIN_IMAGES])
    assert len(server.calls) == 4  # found in the cache the second time


def test_download_fetches_only_missing_files(cache: Path) -> None:
    arrays = fake_arrays()
    sums = write_dir(cache, arrays)
    (cache / fm.TEST_IMAGES).unlink()
    server = FakeServer(gz_blobs(arrays))
    fashion_mnist(checksums=sums, fetch=server)
    assert server.calls == [fm.BASE_URL + fm.TEST_IMAGES]


@pytest.mark.parametrize("corruption", ["truncated gzip", "other content"])
def test_bad_download_leaves_no_file(cache: Path, corruption: str) -> None:
    arrays = fake_arrays()
    blobs = gz_blobs(arrays)
    blobs[fm.TRAIN_IMAGES] = CORRUPTIONS[corruption](blobs[fm.TRAIN_IMAGES])
    with pytest.raises(DataError) as info:
        locate_fashion_mnist(checksums=checksums_of(arrays), fetch=FakeServer(blobs))
    assert fm.BASE_URL + fm.TRAIN_IMAGES in str(info.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_all_sources_fail_lists_tries_and_fixes(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError) as info:
        locate_fashion_mnist(download=False)
    message = str(info.value)
    for tried in (tmp_path / "debian", cache):
        assert f"{tried}: no such directory" in message
    assert "download=False" in message
    assert "NINR_DATA_DIR" in message and "data_dir" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert fm.BASE_URL in message


def test_failed_download_is_reported_once(tmp_path: Path) -> None:
    def offline(url: str) -> bytes:
        raise OSError("Network is unreachable")

    (tmp_path / "debian").mkdir()
    with pytest.raises(DataError) as info:
        load_fashion_mnist_raw(fetch=offline)
    message = str(info.value)
    assert "NINR_DATA_DIR: not set" in message
    assert f"{tmp_path / 'debian'}: missing {fm.TRAIN_IMAGES}" in message
    assert "Network is unreachable" in message
    assert message.count("Fix it in one of three ways") == 1


# ----------------------------------------------------------------------------- validation split


def _id_tensor(x: torch.Tensor) -> torch.Tensor:
    """Recover the encoded example indices from float images."""
    pixels = (x[:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0] + 256 * pixels[:, 1]


def _ids(x: torch.Tensor) -> set[int]:
    return set(_id_tensor(x).tolist())


def test_val_split_is_seeded_disjoint_and_complete(tmp_path: Path) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())

    def load(seed: int) -> Dataset:
        return fashion_mnist(data_dir=tmp_path / "fm", checksums=sums, val_size=50, val_seed=seed)

    a, b, c = load(1), load(1), load(2)
    assert a.x_val is not None and a.y_val is not None and c.x_val is not None
    assert a.x_train.shape[0] == 250 and a.x_val.shape[0] == 50 and a.y_val.shape == (50,)
    assert b.x_val is not None and torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)
    assert _ids(a.x_val) != _ids(c.x_val)
    assert _ids(a.x_val).isdisjoint(_ids(a.x_train))
    assert _ids(a.x_val) | _ids(a.x_train) == set(range(300))
    assert torch.equal(a.y_val, _id_tensor(a.x_val) % 10)  # labels follow their images


@pytest.mark.parametrize("val_size", [-1, 300, 1000, 1.5, True, "10"])
def test_val_size_is_validated(tmp_path: Path, val_size: object) -> None:
    sums = write_dir(tmp_path / "fm", fake_arrays())
    with pytest.raises(ConfigError, match="`val_size` must be"):
        fashion_mnist(data_dir=tmp_path / "fm", checksums=sums, val_size=val_size)


# ----------------------------------------------------------------------------- synthetic and the registry


def test_synthetic_is_deterministic_with_right_shapes() -> None:
    a = synthetic(n_train=64, n_test=32, input_shape=(3, 8, 8), num_classes=4, seed=7)
    b = load_dataset("synthetic", n_train=64, n_test=32, input_shape=[3, 8, 8], num_classes=4, seed=7)
    c = synthetic(n_train=64, n_test=32, input_shape=(3, 8, 8), num_classes=4, seed=8)
    assert a.x_train.shape == (64, 3, 8, 8) and a.x_test.shape == (32, 3, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.num_classes == 4 and a.input_shape == (3, 8, 8)
    assert float(a.x_train.min()) >= 0.0 and float(a.x_train.max()) <= 1.0
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.bincount(a.y_train).tolist() == [16, 16, 16, 16]
    bigger = synthetic(n_train=128, n_test=32, input_shape=(3, 8, 8), num_classes=4, seed=7)
    assert torch.equal(bigger.x_test, a.x_test)  # the task does not depend on n_train


def test_synthetic_is_learnable() -> None:
    ds = synthetic(seed=3)
    means = torch.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(ds.num_classes)])
    dist = torch.cdist(ds.x_test.flatten(1), means.flatten(1))
    accuracy = (dist.argmin(1) == ds.y_test).float().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_test": -3}, "n_test"),
        ({"input_shape": (28, 28)}, "input_shape"),
        ({"input_shape": (1, 0, 28)}, "input_shape"),
        ({"num_classes": 1}, "num_classes"),
        ({"seed": 1.5}, "seed"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_synthetic_validates_arguments(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ConfigError, match=f"`{arg}` must be"):
        synthetic(**kwargs)


def test_registry_and_did_you_mean() -> None:
    assert {"fashion-mnist", "synthetic"} <= set(DATASETS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    with pytest.raises(ConfigError, match="did you mean 'n_train'"):
        load_dataset("synthetic", n_trian=10)


def test_dataset_container() -> None:
    ds = synthetic(n_train=20, n_test=10, input_shape=(1, 4, 4), num_classes=3)
    moved = ds.to("cpu")
    assert moved is not ds and torch.equal(moved.x_train, ds.x_train) and moved.classes == ds.classes
    assert "train=20" in repr(ds) and "test=10" in repr(ds)
    with pytest.raises(DataError, match="10 images but 9 labels"):
        Dataset("d", ds.x_train, ds.y_train, ds.x_test, ds.y_test[:9], ds.classes)
    with pytest.raises(DataError, match="labels must be in"):
        Dataset("d", ds.x_train, ds.y_train + 5, ds.x_test, ds.y_test, ds.classes)
    with pytest.raises(DataError, match="both"):
        Dataset("d", ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, x_val=ds.x_test)


# ----------------------------------------------------------------------------- the real data


@pytest.mark.slow
def test_real_fashion_mnist() -> None:
    try:
        locate_fashion_mnist(download=False)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST is not available offline (downloads disabled in tests): {exc}")
    ds = fashion_mnist(download=False, val_size=5000, val_seed=0)
    assert ds.x_train.shape == (55000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_val is not None and ds.y_val is not None and ds.x_val.shape == (5000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    train_counts = torch.bincount(torch.cat([ds.y_train, ds.y_val]), minlength=10)
    assert train_counts.tolist() == [6000] * 10
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
