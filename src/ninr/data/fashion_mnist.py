"""Fashion-MNIST: find, fetch, verify and load the four official files.

The files and their provenance:

* Upstream: https://github.com/zalandoresearch/fashion-mnist lists the official download location
  :data:`BASE_URL` and the four gzip files below.
* The Debian package ``dataset-fashion-mnist`` installs the same four names under
  :data:`DEBIAN_DIR`. It recompresses them, so the ``.gz`` bytes differ from upstream while the
  decompressed content is identical. That is why :data:`SHA256` holds the sha256 of the
  *decompressed* content, and why every source is verified that way.

Sources (a directory counts only if all four files are there):

1. the ``data_dir`` argument, else the ``NINR_DATA_DIR`` environment variable. A directory named this way
   is used alone: if it lacks a file, loading fails naming the directory and the missing files, and no
   other source is tried (a run never silently reads other data than the directory it was pointed at);
2. otherwise, in order: the Debian package's directory :data:`DEBIAN_DIR`;
3. the user cache ``$NINR_CACHE_DIR/fashion-mnist``, else ``$XDG_CACHE_HOME/ninr/fashion-mnist``,
   else ``~/.cache/ninr/fashion-mnist``;
4. a download of the missing official files into that cache (verified, then written atomically).

A file that exists but does not verify is never used: reading it raises :class:`DataError` naming
the file, what was expected and what was found.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from ninr.data.base import DATASETS, Dataset
from ninr.data.idx import read_idx
from ninr.errors import DataError, check_nonneg_int, fail
from ninr.fileio import atomic_write_bytes
from ninr.rng import make_generator

logger = logging.getLogger(__name__)

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Official download location, as listed by github.com/zalandoresearch/fashion-mnist."""

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES: tuple[str, str, str, str] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# sha256 of the DECOMPRESSED content of each file (identical for the upstream and the Debian copies).
# Checked against the files of Debian's dataset-fashion-mnist (train images: 47,040,016 bytes,
# 60,000 x 28 x 28; test images: 7,840,016 bytes, 10,000 x 28 x 28).
SHA256: Mapping[str, str] = MappingProxyType(
    {
        TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
)

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "NINR_DATA_DIR"
CACHE_DIR_ENV = "NINR_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60.0

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

Fetch = Callable[[str], bytes]
"""Downloads one URL and returns its bytes, raising OSError on failure; injectable so tests never touch the network."""

PathLike = str | os.PathLike[str]
RawArrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
_Table = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Source:
    """A candidate directory and how it was chosen (for messages)."""

    label: str
    path: Path


def default_cache_dir() -> Path:
    """The cache directory for Fashion-MNIST, honouring ``NINR_CACHE_DIR`` and ``XDG_CACHE_HOME``.

    Returns:
        ``$NINR_CACHE_DIR/fashion-mnist`` if set, else ``$XDG_CACHE_HOME/ninr/fashion-mnist`` if set to an
        absolute path, else ``~/.cache/ninr/fashion-mnist``.
    """
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root).expanduser() / "fashion-mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "ninr" / "fashion-mnist"


def _fetch_url(url: str) -> bytes:
    """Download ``url`` with urllib, with a socket timeout of :data:`DOWNLOAD_TIMEOUT_S` seconds.

    Raises:
        OSError: The download failed (network, HTTP status, timeout or a broken response).
    """
    import http.client  # imported here: keeps `import ninr.data` cheap
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "ninr"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data: bytes = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"broken HTTP response: {exc!r}") from exc
    return data


def _checksum_table(checksums: Mapping[str, str] | None) -> _Table:
    """The expected sha256 per file, in :data:`FILES` order; ``checksums`` replaces the official table."""
    table = SHA256 if checksums is None else checksums
    missing = [name for name in FILES if name not in table]
    if missing:
        raise fail("checksums", f"a mapping with the keys {list(FILES)}", sorted(table))
    return tuple((name, str(table[name]).lower()) for name in FILES)


def _missing(path: Path) -> str | None:
    """Why ``path`` is not a usable source, or None if all four files are there."""
    if not path.exists():
        return "no such directory"
    if not path.is_dir():
        return "not a directory"
    absent = [name for name in FILES if not (path / name).is_file()]
    return f"missing {', '.join(absent)}" if absent else None


def _explicit(data_dir: PathLike | None) -> _Source | None:
    """The directory the caller named (``data_dir``, else ``NINR_DATA_DIR``), or None."""
    env = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        return _Source("data_dir argument", Path(data_dir).expanduser())
    if env:
        return _Source(f"{DATA_DIR_ENV}", Path(env).expanduser())
    return None


def _explicit_missing(source: _Source, problem: str) -> DataError:
    """The error for a named directory that lacks files: it is used alone, so nothing else is tried."""
    other = "drop --data-dir / data_dir" if source.label == "data_dir argument" else f"unset {DATA_DIR_ENV}"
    return DataError(
        f"Fashion-MNIST: the {source.label} {source.path} cannot be used: {problem}. A directory named with "
        f"--data-dir, data_dir or {DATA_DIR_ENV} is the only one read: put the four files {', '.join(FILES)} "
        f"there, or {other} to use the Debian package ({DEBIAN_DIR}), the cache ({default_cache_dir()}) or a "
        "download."
    )


def _candidates(tried: list[str]) -> list[_Source]:
    """The automatic directory sources in priority order, without duplicates."""
    tried.append(f"{DATA_DIR_ENV}: not set (and no data_dir argument)")
    sources: list[_Source] = []
    sources.append(_Source(f"Debian package {DEBIAN_PACKAGE}", DEBIAN_DIR))
    sources.append(_Source("user cache", default_cache_dir()))
    unique: dict[Path, _Source] = {}
    for source in sources:
        unique.setdefault(source.path.resolve(), source)
    return list(unique.values())


def _decompress_verified(blob: bytes, expected: str, *, where: str, hint: str = "") -> bytes:
    """Gunzip ``blob`` and check the sha256 of the result; errors name ``where``."""
    try:
        data = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{where}: expected a complete gzip file, found {len(blob)} bytes that do not decompress "
            f"({type(exc).__name__}: {exc}); the file is truncated or corrupted.{hint}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise DataError(
            f"{where}: checksum mismatch: expected sha256 {expected} of the decompressed content, "
            f"found {digest} ({len(data)} bytes); the file is truncated, corrupted or not the official one.{hint}"
        )
    return data


def _download_one(url: str, expected: str, target: Path, fetch: Fetch) -> None:
    """Fetch ``url``, verify it and store it at ``target``; nothing is written unless it verifies."""
    logger.info("downloading %s to %s", url, target)
    try:
        blob = fetch(url)
    except (OSError, ValueError) as exc:
        raise DataError(f"{url}: {type(exc).__name__}: {exc}") from exc
    _decompress_verified(blob, expected, where=f"downloaded {url}")
    try:
        atomic_write_bytes(target, blob)
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc}") from exc


def _download_missing(cache: Path, table: _Table, fetch: Fetch) -> None:
    """Download into ``cache`` each file of ``table`` that is not there yet."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache directory {cache}: {exc}") from exc
    for name, expected in table:
        target = cache / name
        if not target.is_file():
            _download_one(BASE_URL + name, expected, target, fetch)


def _not_found(tried: list[str]) -> DataError:
    """The single error raised when no source works: what was tried and the three fixes."""
    lines = ["Fashion-MNIST could not be found or downloaded. Tried, in order:"]
    lines += [f"  - {entry}" for entry in tried]
    lines += [
        "Fix it in one of three ways:",
        f"  1. set {DATA_DIR_ENV} (or pass data_dir=...) to a directory holding {', '.join(FILES)};",
        f"  2. install the Debian package: apt-get install {DEBIAN_PACKAGE} (it puts the files in {DEBIAN_DIR});",
        f"  3. allow the download (download=True) and check network access to {BASE_URL} "
        f"(the files are cached in {default_cache_dir()}).",
    ]
    return DataError("\n".join(lines))


def _locate(data_dir: PathLike | None, *, download: bool, table: _Table, fetch: Fetch | None) -> Path:
    """The named directory alone, else the first usable automatic source, downloading into the cache last."""
    explicit = _explicit(data_dir)
    if explicit is not None:
        problem = _missing(explicit.path)
        if problem is not None:
            raise _explicit_missing(explicit, problem)
        return explicit.path
    tried: list[str] = []
    for source in _candidates(tried):
        problem = _missing(source.path)
        if problem is None:
            return source.path
        tried.append(f"{source.label} {source.path}: {problem}")
    cache = default_cache_dir()
    if not download:
        tried.append(f"download from {BASE_URL}: disabled (download=False)")
        raise _not_found(tried)
    try:
        _download_missing(cache, table, fetch if fetch is not None else _fetch_url)
    except DataError as exc:
        tried.append(f"download from {BASE_URL} into {cache}: failed: {exc}")
        raise _not_found(tried) from exc
    return cache


def locate_fashion_mnist(
    data_dir: PathLike | None = None,
    *,
    download: bool = True,
    checksums: Mapping[str, str] | None = None,
    fetch: Fetch | None = None,
) -> Path:
    """The directory holding the four Fashion-MNIST files, downloading them into the cache if needed.

    Only the presence of the files is checked here; their content is verified when read.

    Args:
        data_dir: The directory to use, alone; when None, ``NINR_DATA_DIR`` if set; when neither is given, the
            Debian package's directory, the cache, then a download.
        download: Whether to download the official files when no directory has them (never into ``data_dir``).
        checksums: Expected sha256 of each decompressed file, replacing :data:`SHA256` (for tests).
        fetch: Downloads a URL to bytes; defaults to urllib with a timeout (tests inject a fake).

    Returns:
        The directory used.

    Raises:
        DataError: The named directory lacks a file (the message names the directory and the files), or no
            automatic source has the files and the download is disabled or failed (the message lists every
            location tried and how to fix it).
    """
    return _locate(data_dir, download=download, table=_checksum_table(checksums), fetch=fetch)


def _hint(directory: Path) -> str:
    """What to do about a corrupted file in ``directory``."""
    if directory.resolve() == DEBIAN_DIR.resolve():
        return f" Reinstall the package (apt-get install --reinstall {DEBIAN_PACKAGE}) or set {DATA_DIR_ENV}."
    if directory.resolve() == default_cache_dir().resolve():
        return " Delete the file from the cache and it will be downloaded again."
    return f" Replace it with the official file from {BASE_URL}."


def _read_file(path: Path, expected: str, hint: str) -> torch.Tensor:
    """Read, gunzip, verify and parse one file."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return read_idx(_decompress_verified(blob, expected, where=str(path), hint=hint), name=str(path))


def _check_split(images: torch.Tensor, labels: torch.Tensor, where: str) -> None:
    """Images must be (N, H, W), labels (N,) in [0, 10)."""
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{where}: expected images (N, H, W) and labels (N,), found {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if labels.numel() and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{where}: expected labels in [0, {len(CLASSES)}), found {int(labels.max())}")


@functools.lru_cache(maxsize=4)
def _read_dir(directory: Path, table: _Table, stamp: tuple[tuple[int, int], ...], hint: str) -> RawArrays:
    """The four tensors of ``directory``; cached per (directory, checksums, file sizes and mtimes)."""
    del stamp  # only part of the cache key: a changed file is read again
    x_train, y_train, x_test, y_test = (_read_file(directory / name, sha, hint) for name, sha in table)
    _check_split(x_train, y_train, f"{directory} (train)")
    _check_split(x_test, y_test, f"{directory} (test)")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{directory}: train images {tuple(x_train.shape[1:])} differ from test {tuple(x_test.shape[1:])}"
        )
    return x_train, y_train, x_test, y_test


def _stamp(directory: Path) -> tuple[tuple[int, int], ...]:
    """Size and mtime of each file, so that a replaced file invalidates the in-process cache."""
    try:
        stats = [(directory / name).stat() for name in FILES]
    except OSError as exc:
        raise DataError(f"{directory}: cannot read the Fashion-MNIST files: {exc}") from exc
    return tuple((st.st_size, st.st_mtime_ns) for st in stats)


def _load_raw(
    data_dir: PathLike | None, *, download: bool, checksums: Mapping[str, str] | None, fetch: Fetch | None
) -> RawArrays:
    """The cached (shared, do-not-modify) uint8 tensors."""
    table = _checksum_table(checksums)
    directory = _locate(data_dir, download=download, table=table, fetch=fetch).resolve()
    return _read_dir(directory, table, _stamp(directory), _hint(directory))


def load_fashion_mnist_raw(
    data_dir: PathLike | None = None,
    *,
    download: bool = True,
    checksums: Mapping[str, str] | None = None,
    fetch: Fetch | None = None,
) -> RawArrays:
    """The verified Fashion-MNIST arrays as uint8 tensors, read once per process and directory.

    Args:
        data_dir: The directory to use, alone; see :func:`locate_fashion_mnist` for the other sources.
        download: Whether to download the official files when no directory has them.
        checksums: Expected sha256 of each decompressed file, replacing :data:`SHA256` (for tests).
        fetch: Downloads a URL to bytes (tests inject a fake).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: uint8 images ``(60000, 28, 28)`` and ``(10000, 28, 28)``
        and uint8 labels ``(60000,)`` and ``(10000,)``. They are copies; the cache is not affected by changes.

    Raises:
        DataError: No source has the files, or a file is truncated, corrupted or malformed.
    """
    raw = _load_raw(data_dir, download=download, checksums=checksums, fetch=fetch)
    x_train, y_train, x_test, y_test = (t.clone() for t in raw)
    return x_train, y_train, x_test, y_test


def _check_val(val_size: object, val_seed: object) -> None:
    """Type checks of the split arguments, before any data is read."""
    check_nonneg_int("val_size", val_size)
    if isinstance(val_seed, bool) or not isinstance(val_seed, int):
        raise fail("val_seed", "an integer", val_seed)


def _split(
    x: torch.Tensor, y: torch.Tensor, val_size: int, val_seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Carve ``val_size`` examples out of the training set by a seeded permutation (order kept)."""
    if val_size == 0:
        return x, y, None, None
    perm = torch.randperm(y.shape[0], generator=make_generator(val_seed, "val-split"))
    val_idx = perm[:val_size].sort().values
    train_idx = perm[val_size:].sort().values
    return (
        x.index_select(0, train_idx),
        y.index_select(0, train_idx),
        x.index_select(0, val_idx),
        y.index_select(0, val_idx),
    )


def _images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) to float32 (N, 1, H, W) in [0, 1]."""
    return x.unsqueeze(1).to(torch.float32).div_(255.0)


@DATASETS.register("fashion-mnist")
def fashion_mnist(
    *,
    data_dir: PathLike | None = None,
    download: bool = True,
    val_size: int = 0,
    val_seed: int = 0,
    checksums: Mapping[str, str] | None = None,
    fetch: Fetch | None = None,
) -> Dataset:
    """Fashion-MNIST: 28x28 grey images of 10 clothing classes, 60,000 for training and 10,000 for test.

    Args:
        data_dir: A directory holding the four files, used alone; see :func:`locate_fashion_mnist` for the others.
        download: Whether to download the official files when no directory has them.
        val_size: How many training examples to hold out as a validation split (0 for none).
        val_seed: Seed of the permutation that picks the validation examples.
        checksums: Expected sha256 of each decompressed file, replacing :data:`SHA256` (for tests).
        fetch: Downloads a URL to bytes (tests inject a fake).

    Returns:
        A :class:`Dataset` of float32 images ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 labels.

    Raises:
        ConfigError: ``val_size`` is not an integer in ``[0, 60000)`` or ``val_seed`` is not an integer.
        DataError: The data cannot be found or does not verify.
    """
    _check_val(val_size, val_seed)
    x_train, y_train, x_test, y_test = _load_raw(data_dir, download=download, checksums=checksums, fetch=fetch)
    if val_size >= y_train.shape[0]:
        raise fail("val_size", f"an integer in [0, {y_train.shape[0]})", val_size)
    x_tr, y_tr, x_val, y_val = _split(x_train, y_train, val_size, val_seed)
    return Dataset(
        name="fashion-mnist",
        x_train=_images(x_tr),
        y_train=y_tr.to(torch.int64),
        x_test=_images(x_test),
        y_test=y_test.to(torch.int64),
        classes=CLASSES,
        x_val=None if x_val is None else _images(x_val),
        y_val=None if y_val is None else y_val.to(torch.int64),
    )


__all__ = [
    "BASE_URL",
    "CLASSES",
    "DEBIAN_DIR",
    "FILES",
    "SHA256",
    "default_cache_dir",
    "fashion_mnist",
    "load_fashion_mnist_raw",
    "locate_fashion_mnist",
]
