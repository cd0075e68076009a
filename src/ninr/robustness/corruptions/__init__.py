"""Image corruptions on batched float tensors (N, C, H, W) in [0, 1], torch-native, by name and severity.

Importing this package registers every corruption: in :data:`CORRUPTIONS` those defined for any channel
count, in :data:`RGB_CORRUPTIONS` those defined on RGB images only; see ``ninr list corruptions``,
``ninr list rgb-corruptions`` and :mod:`ninr.robustness.severities` for the cited severity tables.
"""

from ninr.robustness.corruptions import blur, digital, edges, geometric, noise, occlusion, weather  # noqa: F401
from ninr.robustness.corruptions._poisson import poisson_quantile
from ninr.robustness.corruptions.base import (
    CORRUPTIONS,
    FAMILIES,
    INTENSITY_NAMES,
    RGB_CORRUPTIONS,
    Corruption,
    check_images,
    corrupt,
    get_corruption,
)
from ninr.robustness.corruptions.edges import canny

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "INTENSITY_NAMES",
    "RGB_CORRUPTIONS",
    "Corruption",
    "canny",
    "check_images",
    "corrupt",
    "get_corruption",
    "poisson_quantile",
]
