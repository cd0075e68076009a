"""Severity tables: the parameter of every corruption at severities 1..5, each with its source.

Most tables are the published ones, copied from the reference code:

* MNIST-C: Mu & Gilmer, "MNIST-C: A Robustness Benchmark for Computer Vision", ICML 2019 workshop,
  arXiv:1906.02337; code ``google-research/mnist-c``, ``corruptions.py``. MNIST-C evaluates one severity
  per corruption but its code keeps the five-level tables.
* ImageNet-C: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019; code ``hendrycks/robustness``, ``make_imagenet_c.py``. MNIST-C took its
  noise, blur, weather and digital tables from there unchanged, and they act on 28x28 images as they are
  (pixel-space parameters: noise std, blur sigma in pixels, shift in pixels).

* imagecorruptions: Michaelis et al., "Benchmarking Robustness in Object Detection: Autonomous Driving
  when Winter is Coming", 2019, arXiv:1907.07484; code ``bethgelab/imagecorruptions``, ``corruptions.py``:
  ImageNet-C's corruptions for images of any size. Defocus blur, zoom blur, snow, frost, JPEG compression,
  elastic transform and saturate take its tables; the first five equal ImageNet-C's (and MNIST-C's), elastic
  transform is its size-relative rewrite, saturate acts on RGB images only.

Where the reference defines a corruption at a single strength, we built the five levels, and the table
says so (source ``ninr: ...``): for stripe, canny edges and inverse the reference strength is severity 5
and lower severities scale it down; for dotted line and zigzag the reference (one line) is severity 1 and
higher severities draw more lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ninr.errors import ConfigError, fail

MNIST_C = "MNIST-C (Mu & Gilmer 2019), google-research/mnist-c corruptions.py"
IMAGENET_C = "ImageNet-C (Hendrycks & Dietterich 2019), hendrycks/robustness make_imagenet_c.py"
IMAGECORRUPTIONS = "imagecorruptions (Michaelis et al. 2019), bethgelab/imagecorruptions corruptions.py"
SEVERITIES = (1, 2, 3, 4, 5)


def arange_factors(stop: float, step: float) -> tuple[float, ...]:
    """``numpy.arange(1, stop, step)`` as numpy evaluates it: ``1 + i ((1 + step) - 1)``, ``ceil((stop - 1) / step)``
    values (``arange(1, 1.11, 0.01)`` holds 1.11)."""
    delta = (1.0 + step) - 1.0
    return tuple(1.0 + i * delta for i in range(math.ceil((stop - 1.0) / step)))


@dataclass(frozen=True)
class SeverityTable:
    """The parameter of one corruption at severities 1..5.

    Attributes:
        values: five entries, severity 1 first.
        parameter: what an entry means.
        source: where the numbers come from.
    """

    values: tuple[Any, ...]
    parameter: str
    source: str

    def __post_init__(self) -> None:
        if len(self.values) != len(SEVERITIES):
            raise ConfigError(f"a severity table needs {len(SEVERITIES)} values, got {len(self.values)}")

    def at(self, severity: int) -> Any:
        """The entry for ``severity`` (an integer in 1..5)."""
        return self.values[check_severity(severity) - 1]


def check_severity(severity: Any) -> int:
    """An integer in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise fail("severity", "an integer in 1..5", severity)
    return severity


_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
_ZOOM_RANGES = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))

TABLES: dict[str, SeverityTable] = {
    # ---- noise: tables shared by MNIST-C gaussian/shot/impulse/speckle and ImageNet-C
    "gaussian-noise": SeverityTable(_NOISE_STD, "noise std", f"{MNIST_C} gaussian_noise (= {IMAGENET_C})"),
    "uniform-noise": SeverityTable(
        _NOISE_STD, "noise std", "ninr: the gaussian-noise table at equal std (no published uniform table)"
    ),
    "shot-noise": SeverityTable((60, 25, 12, 5, 3), "photons per unit intensity c: Poisson(c x) / c", MNIST_C),
    "impulse-noise": SeverityTable((0.03, 0.06, 0.09, 0.17, 0.27), "fraction of pixels set to 0 or 1", MNIST_C),
    "speckle-noise": SeverityTable((0.15, 0.2, 0.35, 0.45, 0.6), "std of the multiplicative noise", MNIST_C),
    # ---- blur
    "gaussian-blur": SeverityTable((1, 2, 3, 4, 6), "blur sigma (pixels)", f"{MNIST_C} gaussian_blur"),
    "glass-blur": SeverityTable(
        ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "(blur sigma, max pixel displacement, iterations)",
        MNIST_C,
    ),
    "motion-blur": SeverityTable(
        ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "(kernel radius, kernel sigma) of ImageMagick's motion blur",
        MNIST_C,
    ),
    "defocus-blur": SeverityTable(
        ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "(disk radius in pixels, sigma of the disk's anti-aliasing blur)",
        f"{IMAGECORRUPTIONS} defocus_blur (= {IMAGENET_C}, = {MNIST_C})",
    ),
    "zoom-blur": SeverityTable(
        tuple(arange_factors(stop, step) for stop, step in _ZOOM_RANGES),
        f"zoom factors numpy.arange(1, stop, step), (stop, step) = {', '.join(map(str, _ZOOM_RANGES))}",
        f"{IMAGECORRUPTIONS} zoom_blur (= {IMAGENET_C}, = {MNIST_C})",
    ),
    "pixelate": SeverityTable(
        (0.72, 0.58, 0.43, 0.33, 0.25),
        "size factor: area-average down to int(factor size) pixels, blocks back up",
        f"ninr: {IMAGENET_C}'s factors (0.6, 0.5, 0.4, 0.3, 0.25), which MNIST-C reuses, give a 28-pixel image "
        "16, 14, 11, 8 and 7 pixels, and 28 -> 14 (an exact halving) pixelates less than 28 -> 16; these give "
        "20, 16, 12, 9, 7 (severity 5 unchanged), so the distance grows with severity",
    ),
    # ---- geometric (MNIST-C's own tables)
    "shear": SeverityTable((0.2, 0.4, 0.6, 0.8, 1.0), "shear angle (radians), random sign", MNIST_C),
    "rotate": SeverityTable((0.2, 0.4, 0.6, 0.8, 1.0), "rotation angle (radians), random sign", MNIST_C),
    "scale": SeverityTable((1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5), "zoom-out factor", MNIST_C),
    "translate": SeverityTable((1, 2, 3, 4, 5), "shift per axis (pixels), random signs", MNIST_C),
    "elastic-transform": SeverityTable(
        (12.5, 16.25, 21.25, 25.0, 30.0),
        "alpha: displacement = alpha x (uniform field on +-0.005 H, Gaussian-smoothed with sigma 0.01 H, 0.01 W)",
        f"{IMAGECORRUPTIONS} elastic_transform (alpha 250 x (0.05, 0.065, 0.085, 0.1, 0.12)), its rule for any "
        f"image size; {MNIST_C}'s 28-pixel table (a random affine step, then (alpha, sigma) = (56, 19.6), "
        "(56, 2.24), (1.4, 0.28), (1.96, 0.28), (3.36, 0.28)) displaces far less at severities 3-5 than at 1-2",
    ),
    # ---- digital
    "brightness": SeverityTable((0.1, 0.2, 0.3, 0.4, 0.5), "added HSV value", MNIST_C),
    "jpeg-compression": SeverityTable(
        (25, 18, 15, 9, 7),
        "JPEG quality (libjpeg's scaling of the standard quantisation tables)",
        f"{IMAGECORRUPTIONS} jpeg_compression (= {IMAGENET_C}, = {MNIST_C}), except severity 4's quality 9 "
        "(reference 10): the change is not monotone in quality (libjpeg's integer table scaling); on textured "
        "28x28 images qualities 15 and 10 change them equally, and 9 is the nearest quality whose change lies "
        "between severities 3 and 5 on them and on Fashion-MNIST",
    ),
    "saturate": SeverityTable(
        ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
        "(factor a, offset b): HSV saturation s -> clip(a s + b); RGB images only",
        f"{IMAGECORRUPTIONS} saturate (= {IMAGENET_C})",
    ),
    "contrast": SeverityTable((0.4, 0.3, 0.2, 0.1, 0.05), "contrast factor around the image mean", MNIST_C),
    "inverse": SeverityTable(
        (0.2, 0.4, 0.6, 0.8, 1.0), "blend weight a: x + a (1 - 2x)", f"ninr: severity 5 is {MNIST_C} inverse"
    ),
    "stripe": SeverityTable(
        (0.05, 0.1, 0.15, 0.2, 0.25),
        "width fraction of the inverted band at each side",
        f"ninr: severity 5 (7 of 28 columns per side) is {MNIST_C} stripe",
    ),
    "canny-edges": SeverityTable(
        (0.2, 0.4, 0.6, 0.8, 1.0), "blend weight of the edge map", f"ninr: severity 5 is {MNIST_C} canny_edges"
    ),
    # ---- weather
    "fog": SeverityTable(
        ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.75, 1.5), (3.0, 1.4)),
        "(fog strength, plasma wibble decay)",
        f"{MNIST_C}, except severity 4's strength 2.75 (reference 2.5): the reference's severities 3 and 4 "
        "share strength 2.5 and differ only in texture, which changes the mean distance by less than the "
        "sampling noise; 2.75 makes it grow",
    ),
    "spatter": SeverityTable(
        (
            (0.65, 0.3, 4, 0.69, 0.6),
            (0.65, 0.3, 3, 0.68, 0.6),
            (0.65, 0.3, 2, 0.68, 0.5),
            (0.65, 0.3, 2, 0.665, 0.5),
            (0.65, 0.3, 2, 0.65, 0.5),
        ),
        "(liquid mean, liquid std, blur sigma, threshold, mask blur sigma); mud colour 63/255",
        f"{MNIST_C} spatter for severities 1-3; 4-5 are severity 3 with lower thresholds (ninr): MNIST-C "
        f"paints every level as mud, and {IMAGENET_C}'s levels 4-5 (blur 1, mask blur 1.5), tuned for its "
        "other rendering, then cover less of a 28x28 image than level 3",
    ),
    "snow": SeverityTable(
        (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "(flake mean, flake std, zoom, threshold, motion-blur radius, motion-blur sigma, image weight)",
        f"{IMAGECORRUPTIONS} snow (= {IMAGENET_C}, = {MNIST_C}), except severity 2's flake mean 0.15 (reference "
        "0.2): on 28x28 images the reference's severities 2 and 3 change Fashion-MNIST by 0.234 and 0.241, closer "
        "than 16-image draws can order (zoom 4 leaves 7x7 random values per image); 0.15 gives 0.210",
    ),
    "frost": SeverityTable(
        ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.725), (0.6, 0.75)),
        "(image weight, frost weight); the frost texture is synthesised (docs/robustness.md)",
        f"{IMAGECORRUPTIONS} frost (= {IMAGENET_C}, = {MNIST_C}), except severity 4's frost weight 0.725 "
        "(reference 0.7, midway between severities 3 and 5): with the reference's, the image weight drops "
        "0.7 -> 0.65 at an equal frost weight and the change shrinks from severity 3",
    ),
    # ---- drawn occlusions
    "dotted-line": SeverityTable(
        (1, 2, 3, 4, 5), "number of dotted lines", f"ninr: severity 1 is {MNIST_C} dotted_line (one line)"
    ),
    "zigzag": SeverityTable((1, 2, 3, 4, 5), "number of zigzags", f"ninr: severity 1 is {MNIST_C} zigzag (one zigzag)"),
}
