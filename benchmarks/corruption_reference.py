"""Our corruptions against independent NumPy/SciPy re-implementations of the reference formulas.

For each compared corruption and severity, on the first ``--images`` Fashion-MNIST test images: the mean
absolute change ``mean |corrupted - clean|`` of ours and of the reference, and the accuracy drop (clean
accuracy minus corrupted accuracy, in points) of a fixed model, a 784-128-10 MLP trained for one epoch
(seeded). Random corruptions are drawn ``--draws`` times; the standard errors are over draws.

The references, re-implemented here from the reference code (read, not copied):

* glass blur, fog, snow, frost: MNIST-C (``google-research/mnist-c``, ``corruptions.py``): glass blur's
  sequential pixel swaps between two Gaussian blurs; fog's top-left 28 x 28 crop of a 256 x 256 plasma
  map normalised over the whole map; snow's zoomed, thresholded flakes streaked by ImageMagick's motion
  blur; frost's crops of its photographs (``--frost-dir``: a folder holding ``frost1.png`` .. ``frost5.jpg``
  from that repository; without it frost is not compared).
* defocus blur, zoom blur, JPEG compression, elastic transform: imagecorruptions
  (``bethgelab/imagecorruptions``, ``corruptions.py``; the first three equal MNIST-C's): an anti-aliased
  disk under OpenCV's ``filter2D`` (reflect-101 edges; written here with ``scipy.ndimage.correlate``,
  mode ``mirror``), ``clipped_zoom`` with ``scipy.ndimage.zoom``, PIL's JPEG encoder and decoder, and the
  elastic field with ``scipy.ndimage.gaussian_filter`` and ``map_coordinates``.

Glass blur blurs over both image axes here (ImageNet-C's formula, and ninr's): MNIST-C's code passes a
2-D gray array to ``skimage.filters.gaussian(..., multichannel=True)``, which takes the last axis for
channels and so blurs down the rows only. The row-only variant is printed for information.

Needs SciPy and Pillow, which ninr does not depend on. Run:

    PYTHONPATH=<a folder with scipy> .venv/bin/python benchmarks/corruption_reference.py \\
        --frost-dir <mnist-c checkout>/frost --write

``--write`` stores the reference numbers in tests/data/corruption_reference.json, which
tests/test_corruptions.py compares ours against.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import correlate, gaussian_filter, map_coordinates
from scipy.ndimage import zoom as scizoom

from ninr.data import load_fashion_mnist_raw
from ninr.robustness import TABLES, corrupt

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "corruption_reference.json"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # MNIST-C draws randint(5)

# The reference tables, typed from the reference code.
GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
ZOOM = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
JPEG = (25, 18, 15, 10, 7)
ELASTIC = tuple(250 * a for a in (0.05, 0.065, 0.085, 0.1, 0.12))

# Where ninr's table departs from the reference's (severities.py says why), the reference formula is
# evaluated at ninr's entry, and at the reference's own entry for information.
ADAPTED: dict[str, dict[int, Any]] = {
    "fog": {4: (2.75, 1.5)},
    "snow": {2: (0.15, 0.3, 2, 0.5, 12, 4, 0.7)},
    "frost": {4: (0.65, 0.725)},
    "jpeg-compression": {4: 9},
}


# ----------------------------------------------------------------------------- reference formulas
# x: float64 images (N, 28, 28) in [0, 1]; rng: numpy Generator. Batched over images where the formula
# allows; the per-image random draws follow the reference's distributions.


def ref_glass_blur(x: np.ndarray, level: Any, rng: np.random.Generator, *, rows_only: bool = False) -> np.ndarray:
    sigma, delta, iterations = level
    s = (0, sigma, 0) if rows_only else (0, sigma, sigma)
    y = (gaussian_filter(x, s, mode="nearest", truncate=4.0) * 255).astype(np.uint8)  # np.uint8(): truncation
    n, h, w = y.shape
    every = np.arange(n)
    for _ in range(iterations):
        for r in range(h - delta, delta, -1):
            for c in range(w - delta, delta, -1):
                swap = rng.random(n) < 0.5  # np.random.choice([True, False])
                d = rng.integers(-delta, delta, size=(n, 2))  # dx, dy
                rp, cp = np.where(swap, r + d[:, 1], r), np.where(swap, c + d[:, 0], c)
                here, there = y[every, r, c].copy(), y[every, rp, cp].copy()
                y[every, r, c] = there
                y[every, rp, cp] = here
    return np.clip(gaussian_filter(y / 255.0, s, mode="nearest", truncate=4.0), 0, 1)


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """MNIST-C's diamond-square map, ``n`` at once (N, size, size), normalised to [0, 1] per map."""
    m = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        square = corner + np.roll(corner, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        m[:, half::step, half::step] = wibbled(square)
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=2))
        m[:, half::step, 0::step] = wibbled(dr + np.roll(dr, 1, axis=2) + ul + np.roll(ul, -1, axis=1))
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def ref_fog(x: np.ndarray, level: Any, rng: np.random.Generator, *, map_size: int = 256) -> np.ndarray:
    strength, decay = level
    peak = x.max(axis=(1, 2), keepdims=True)
    chunk = max(1, (1 << 21) // (map_size * map_size))  # bounded memory for 256 x 256 float64 maps
    haze = np.concatenate(
        [plasma_fractal(min(chunk, len(x) - i), map_size, decay, rng)[:, :28, :28] for i in range(0, len(x), chunk)]
    )
    return np.clip((x + strength * haze) * peak / (peak + strength), 0, 1)


def disk(radius: int, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        grid, ksize = np.arange(-8, 9), 3
    else:
        grid, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    d = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    d /= d.sum()
    t = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_blur**2))
    g /= g.sum()  # cv2.getGaussianKernel(ksize, sigma > 0); cv2.GaussianBlur's edges are reflect-101 ("mirror")
    return correlate(correlate(d, g[None, :], mode="mirror"), g[:, None], mode="mirror")


def ref_defocus_blur(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    k = disk(*level)
    return np.clip(np.stack([correlate(im, k, mode="mirror") for im in x]), 0, 1)  # cv2.filter2D


def clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / float(factor)))
    top = (h - ch) // 2
    img = scizoom(img[top : top + ch, top : top + ch], (factor, factor), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


def ref_zoom_blur(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    factors = np.arange(1, *level)
    return np.stack([np.clip((im + sum(clipped_zoom(im, z) for z in factors)) / (len(factors) + 1), 0, 1) for im in x])


def magick_motion_blur(img: np.ndarray, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage (effect.c): one-sided Gaussian weights over 2 ceil(radius) + 1 taps at
    offsets (ceil(i cos a - 0.5), ceil(i sin a - 0.5)) (column, row), edge pixels repeated."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width)
    k = np.exp(-(i**2) / (2 * sigma**2))
    k /= k.sum()
    a = np.deg2rad(angle_deg)
    h, w = img.shape
    rr, cc = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros_like(img)
    for t in range(width):
        ox, oy = math.ceil(t * math.cos(a) - 0.5), math.ceil(t * math.sin(a) - 0.5)
        out += k[t] * img[np.clip(rr + oy, 0, h - 1), np.clip(cc + ox, 0, w - 1)]
    return out


def ref_snow(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, weight = level
    out = np.empty_like(x)
    for i, im in enumerate(x):
        layer = clipped_zoom(rng.normal(size=im.shape, loc=mean, scale=std), zoom)
        layer[layer < threshold] = 0
        layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8) / 255.0  # PIL image for Wand
        layer = np.round(magick_motion_blur(layer, radius, sigma, rng.uniform(-135, -45)) * 255) / 255.0  # 8-bit PNG
        im = weight * im + (1 - weight) * np.maximum(im, im * 1.5 + 0.5)
        out[i] = np.clip(im + layer + np.rot90(layer, k=2), 0, 1)
    return out


def load_frost(frost_dir: Path) -> list[np.ndarray]:
    """The five photographs as gray arrays in [0, 1] (cv2.imread(f, 0): BT.601 luma, as PIL's "L")."""
    return [np.asarray(Image.open(frost_dir / f).convert("L"), dtype=np.float64) / 255.0 for f in FROST_FILES]


def ref_frost(x: np.ndarray, level: Any, rng: np.random.Generator, *, photos: list[np.ndarray]) -> np.ndarray:
    a, b = level
    out = np.empty_like(x)
    for i, im in enumerate(x):
        photo = photos[rng.integers(5)]
        r, c = rng.integers(0, photo.shape[0] - 28), rng.integers(0, photo.shape[1] - 28)
        out[i] = np.clip(a * im + b * photo[r : r + 28, c : c + 28], 0, 1)
    return out


def ref_jpeg_compression(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(x)
    for i, im in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(np.round(im * 255).astype(np.uint8), mode="L").save(buffer, "JPEG", quality=level)
        out[i] = np.asarray(Image.open(buffer), dtype=np.float64) / 255.0
    return out


def ref_elastic_transform(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    alpha = level
    out = np.empty_like(x)
    h, w = x.shape[1:]
    sigma = np.array([h, w]) * 0.01
    top = h * 0.005
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i, im in enumerate(x):
        dx = gaussian_filter(rng.uniform(-top, top, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
        dy = gaussian_filter(rng.uniform(-top, top, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
        coords = np.stack([(rows + dy).ravel(), (cols + dx).ravel()])
        out[i] = np.clip(map_coordinates(im, coords, order=1, mode="reflect").reshape(h, w), 0, 1)
    return out


REFERENCES: dict[str, tuple[Callable[..., np.ndarray], tuple[Any, ...], bool]] = {
    # name: (formula, the reference's table, random)
    "glass-blur": (ref_glass_blur, GLASS, True),
    "fog": (ref_fog, FOG, True),
    "defocus-blur": (ref_defocus_blur, DEFOCUS, False),
    "zoom-blur": (ref_zoom_blur, ZOOM, False),
    "snow": (ref_snow, SNOW, True),
    "frost": (ref_frost, FROST, True),
    "jpeg-compression": (ref_jpeg_compression, JPEG, False),
    "elastic-transform": (ref_elastic_transform, ELASTIC, True),
}
INFO: dict[str, tuple[str, Callable[..., np.ndarray], dict[str, Any]]] = {
    # variants printed for information: (base corruption, formula, keyword arguments)
    "glass-blur, MNIST-C as run (blur down the rows only)": ("glass-blur", ref_glass_blur, {"rows_only": True}),
    "fog, imagecorruptions (32 x 32 map)": ("fog", ref_fog, {"map_size": 32}),
}


# ----------------------------------------------------------------------------- the fixed model


def train_mlp(x_train: torch.Tensor, y_train: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """784-128-10 ReLU MLP, one epoch of SGD (lr 0.1, momentum 0.9, batch 64) on pixels in [0, 1], seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        xs = x_train.float().div(255).unsqueeze(1)
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), y_train[idx].long()).backward()
            opt.step()
    return model.eval()


def accuracy(model: torch.nn.Module, images: np.ndarray | torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(-1, 1, 28, 28)
        return float((model(x).argmax(1) == labels).float().mean())


# ----------------------------------------------------------------------------- measurement


def summary(values: list[float]) -> tuple[float, float]:
    """Mean and standard error over draws (0 for one draw)."""
    mean = float(np.mean(values))
    return mean, (float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0)


def measure(
    make: Callable[[int], np.ndarray], x: np.ndarray, model: torch.nn.Module, labels: torch.Tensor, draws: int
) -> dict[str, float]:
    """Mean absolute change and accuracy drop (points) of ``make(draw)``, over draws."""
    clean = accuracy(model, x, labels)
    change, drop = [], []
    for d in range(draws):
        out = make(d)
        change.append(float(np.abs(out - x).mean()))
        drop.append(100 * (clean - accuracy(model, out, labels)))
    (c, c_se), (a, a_se) = summary(change), summary(drop)
    return {"mean_abs_change": c, "mean_abs_change_se": c_se, "accuracy_drop": a, "accuracy_drop_se": a_se}


def reference_draws(
    formula: Callable[..., np.ndarray], x: np.ndarray, level: Any, severity: int, kwargs: dict[str, Any]
) -> Callable[[int], np.ndarray]:
    """Draw ``d`` of the reference formula at ``level``: a numpy generator seeded with (severity, d)."""

    def draw(d: int) -> np.ndarray:
        return formula(x, level, np.random.default_rng([severity, d]), **kwargs)

    return draw


def our_draws(name: str, severity: int, x: np.ndarray) -> Callable[[int], np.ndarray]:
    """Draw ``d`` of ninr's corruption: a torch generator seeded with 1000 + d."""
    t = torch.as_tensor(x, dtype=torch.float64).unsqueeze(1)

    def draw(d: int) -> np.ndarray:
        generator = torch.Generator().manual_seed(1000 + d)
        return corrupt(t, name, severity, generator=generator).squeeze(1).numpy()

    return draw


def frost_statistics(photos: list[np.ndarray], crops: int = 5000, seed: int = 1) -> None:
    """Per photograph, over random 28x28 crops: mean and std of the crop mean, RMS within-crop std, and the
    correlation between pixels 1, 2, 4 and 8 apart (ninr's FROST_PHOTOS and texture constants)."""
    rng = np.random.default_rng(seed)
    for f, a in zip(FROST_FILES, photos, strict=True):
        means, stds = [], []
        corr: dict[int, list[float]] = {lag: [] for lag in (1, 2, 4, 8)}
        for _ in range(crops):
            r, c = rng.integers(0, a.shape[0] - 28), rng.integers(0, a.shape[1] - 28)
            p = a[r : r + 28, c : c + 28]
            means.append(p.mean())
            stds.append(p.std())
            q = p - p.mean()
            var = (q * q).mean()
            for lag in corr:
                corr[lag].append(((q[:, lag:] * q[:, :-lag]).mean() + (q[lag:] * q[:-lag]).mean()) / 2 / var)
        lags = " ".join(f"{float(np.mean(v)):.3f}" for v in corr.values())
        within = math.sqrt(np.mean(np.square(stds)))
        print(f"  {f}: crop mean {np.mean(means):.3f} (std {np.std(means):.3f}), within-crop std {within:.3f}, "
              f"correlation at 1/2/4/8 px {lags}")  # fmt: skip


def check_tables(names: list[str]) -> None:
    """ninr's tables are the reference's, except the entries ADAPTED lists."""
    for name in names:
        table = REFERENCES[name][1]
        for s, entry in enumerate(table, start=1):
            expected = ADAPTED.get(name, {}).get(s, entry)
            got = TABLES[name].at(s)
            if name == "zoom-blur":
                expected = tuple(np.arange(1, *entry).tolist())
            if tuple(np.atleast_1d(got)) != tuple(np.atleast_1d(expected)):
                raise SystemExit(f"{name} severity {s}: ninr's table has {got}, the reference {expected}")


def machine() -> dict[str, str]:
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
        line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        flags = " ".join(sorted(f for f in line.split() if f.startswith("avx")))
    except OSError:
        model = platform.processor()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "avx": flags, "commit": commit, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="the first N Fashion-MNIST test images")
    parser.add_argument("--draws", type=int, default=3, help="draws of each random corruption")
    parser.add_argument("--only", nargs="*", default=None, help="these corruptions only")
    parser.add_argument("--frost-dir", type=Path, default=None, help="MNIST-C's frost photographs")
    parser.add_argument("--write", action="store_true", help=f"write the reference numbers to {OUT}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_fashion_mnist_raw(download=False)
    x = x_test[: args.images].numpy().astype(np.float64) / 255.0
    labels = y_test[: args.images].long()
    started = time.perf_counter()
    model = train_mlp(x_train, y_train)
    clean = accuracy(model, x, labels)
    info = machine()
    print(f"{args.images} images, {args.draws} draws; MLP trained in {time.perf_counter() - started:.1f}s, "
          f"clean accuracy {100 * clean:.2f}%; {info}")  # fmt: skip
    photos = load_frost(args.frost_dir) if args.frost_dir else None
    if photos is not None:
        print("frost photographs:")
        frost_statistics(photos)
    names = [n for n in REFERENCES if (args.only is None or n in args.only) and (n != "frost" or photos)]
    check_tables(names)
    print(f"\n{'corruption':<20} sev | {'|change| ours':>13} {'ref':>13} {'ratio':>6} | "
          f"{'drop ours':>10} {'ref':>10} {'diff':>6}")  # fmt: skip
    results: dict[str, dict[str, list[float]]] = {}
    for name in names:
        formula, table, random = REFERENCES[name]
        extra = {"photos": photos} if name == "frost" else {}
        draws = args.draws if random else 1
        rows: dict[str, list[float]] = {}
        for s in range(1, 6):
            level = ADAPTED.get(name, {}).get(s, table[s - 1])
            ref = measure(reference_draws(formula, x, level, s, extra), x, model, labels, draws)
            our = measure(our_draws(name, s, x), x, model, labels, draws)
            for key, value in ref.items():
                rows.setdefault(key, []).append(round(value, 6))
            print(f"{name:<20} {s:>3} | {our['mean_abs_change']:>13.4f} {ref['mean_abs_change']:>13.4f} "
                  f"{our['mean_abs_change'] / ref['mean_abs_change']:>6.3f} | {our['accuracy_drop']:>10.2f} "
                  f"{ref['accuracy_drop']:>10.2f} {our['accuracy_drop'] - ref['accuracy_drop']:>+6.2f}")  # fmt: skip
            if s in ADAPTED.get(name, {}):
                own = measure(reference_draws(formula, x, table[s - 1], s, extra), x, model, labels, draws)
                print(f"{'  (reference entry ' + str(table[s - 1]) + ')':<24} | {'':>13} "
                      f"{own['mean_abs_change']:>13.4f} {'':>6} | {'':>10} {own['accuracy_drop']:>10.2f}")  # fmt: skip
        results[name] = rows
    for label, (base, formula, kwargs) in INFO.items():
        if base not in names:
            continue
        print(f"\n{label}:")
        for s in range(1, 6):
            level = ADAPTED.get(base, {}).get(s, REFERENCES[base][1][s - 1])
            ref = measure(reference_draws(formula, x, level, s, kwargs), x, model, labels, args.draws)
            print(f"  severity {s}: |change| {ref['mean_abs_change']:.4f}, drop {ref['accuracy_drop']:.2f}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s, load average {os.getloadavg()[0]:.1f}")
    if args.write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "what": "reference mean absolute change and accuracy drop (points) per severity 1..5 "
            "(benchmarks/corruption_reference.py)",
            "images": args.images,
            "draws": args.draws,
            "model": "784-128-10 ReLU MLP, 1 epoch SGD lr 0.1 momentum 0.9 batch 64, torch.manual_seed(0)",
            "clean_accuracy": round(clean, 6),
            "machine": info,
            "corruptions": results,
        }
        OUT.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
