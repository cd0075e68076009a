"""Calibration of predicted probabilities: expected calibration error, negative log-likelihood, Brier score.

Pure functions of ``(probs, labels)``: ``probs`` is ``(N, C)`` (rows sum to 1), ``labels`` is ``(N,)``.

* **ECE** (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3): the confidence of an example
  is its largest probability and its prediction that class; examples fall into ``n_bins`` equal-width bins
  ``((m - 1) / M, m / M]`` (a confidence of exactly 0 joins the first bin), and
  ``ECE = sum_m |B_m| / N * |accuracy(B_m) - mean confidence(B_m)|``. 15 bins by default, as in Guo et al.
* **NLL**: the mean of ``-log p_y`` (natural log).
* **Brier score** (Brier 1950, multi-class form): the mean over examples of ``sum_c (p_c - 1[y = c])^2``,
  in [0, 2].

A prediction averaged over noise draws (a noise-injected model with its noise on) is the mean of the
softmax over the draws; :func:`mean_softmax` computes it in log space, so a class whose probability
underflows in every draw keeps a finite log-likelihood. :func:`per_example` reduces a batch to the four
numbers per example the metrics need, so an evaluation can hold them for a whole test set and compute the
metrics once (:func:`summarize`), whatever its chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ninr.errors import check_positive_int, fail

DEFAULT_BINS = 15
METRICS = ("ece", "nll", "brier")


@dataclass(frozen=True)
class ExampleCalibration:
    """Per-example quantities (CPU tensors of shape ``(N,)``, float64 but ``correct``): top probability,
    whether the top class is the label, ``-log p_y`` and the Brier term ``sum_c (p_c - 1[y = c])^2``."""

    confidence: torch.Tensor
    correct: torch.Tensor
    nll: torch.Tensor
    brier: torch.Tensor

    @staticmethod
    def cat(parts: list[ExampleCalibration]) -> ExampleCalibration:
        """The examples of ``parts`` in order, as one."""
        return ExampleCalibration(
            torch.cat([p.confidence for p in parts]),
            torch.cat([p.correct for p in parts]),
            torch.cat([p.nll for p in parts]),
            torch.cat([p.brier for p in parts]),
        )


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width confidence bin: number of examples, mean confidence and accuracy (``None`` if empty)."""

    count: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]


def _check(probs: torch.Tensor, labels: torch.Tensor) -> None:
    if probs.ndim != 2:
        raise fail("probs", "a (N, C) tensor", tuple(probs.shape))
    if labels.shape != probs.shape[:1]:
        raise fail("labels", f"a tensor of shape ({probs.shape[0]},)", tuple(labels.shape))


def per_example_from_log_probs(log_probs: torch.Tensor, labels: torch.Tensor) -> ExampleCalibration:
    """:class:`ExampleCalibration` of log-probabilities ``(N, C)`` (computed in float64)."""
    _check(log_probs, labels)
    logp = log_probs.to(torch.float64)
    labels = labels.to(logp.device, torch.long)
    probs = logp.exp()
    confidence, top = probs.max(dim=1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(torch.float64)
    return ExampleCalibration(  # on the CPU: N numbers each, reduced there whatever the model's device
        confidence=confidence.cpu(),
        correct=(top == labels).cpu(),
        nll=-logp.gather(1, labels[:, None])[:, 0].cpu(),
        brier=((probs - onehot) ** 2).sum(dim=1).cpu(),
    )


def per_example(probs: torch.Tensor, labels: torch.Tensor) -> ExampleCalibration:
    """:class:`ExampleCalibration` of probabilities ``(N, C)``; a zero ``p_y`` gives an infinite NLL term."""
    _check(probs, labels)
    return per_example_from_log_probs(probs.to(torch.float64).log(), labels)


def mean_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Log of the mean over draws of the softmax of ``logits`` ``(D, N, C)``: ``(N, C)`` log-probabilities,
    float64 (``logsumexp`` over draws minus ``log D``)."""
    if logits.ndim != 3:
        raise fail("logits", "a (draws, N, C) tensor", tuple(logits.shape))
    logp = torch.log_softmax(logits.to(torch.float64), dim=2)
    return torch.logsumexp(logp, dim=0) - math.log(logits.shape[0])


def bin_index(confidence: torch.Tensor, n_bins: int = DEFAULT_BINS) -> torch.Tensor:
    """The bin ``m - 1`` of each confidence: ``((m - 1) / M, m / M]``, clamped into ``0 .. M - 1``."""
    check_positive_int("n_bins", n_bins)
    return (torch.ceil(confidence.to(torch.float64) * n_bins) - 1).clamp_(0, n_bins - 1).long()


def reliability(stats: ExampleCalibration, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Counts, mean confidence and accuracy per equal-width bin (the data of a reliability diagram)."""
    idx = bin_index(stats.confidence, n_bins)
    count = torch.bincount(idx, minlength=n_bins)
    conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, stats.confidence.to(torch.float64))
    hits = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, stats.correct.to(torch.float64))
    counts = [int(c) for c in count]
    return ReliabilityBins(
        count=counts,
        confidence=[float(conf[i]) / c if c else None for i, c in enumerate(counts)],
        accuracy=[float(hits[i]) / c if c else None for i, c in enumerate(counts)],
    )


def ece_of_bins(bins: ReliabilityBins) -> float:
    """ECE from reliability bins: the count-weighted mean of ``|accuracy - confidence|`` (0 without examples)."""
    total = sum(bins.count)
    if total == 0:
        return math.nan
    gap = 0.0
    for count, acc, conf in zip(bins.count, bins.accuracy, bins.confidence, strict=True):
        if count and acc is not None and conf is not None:
            gap += count * abs(acc - conf)
    return gap / total


def summarize(stats: ExampleCalibration, n_bins: int = DEFAULT_BINS) -> tuple[dict[str, float], ReliabilityBins]:
    """``{"ece", "nll", "brier"}`` and the reliability bins of per-example quantities (NaN without examples)."""
    bins = reliability(stats, n_bins)
    n = len(stats.nll)
    metrics = {
        "ece": ece_of_bins(bins),
        "nll": float(stats.nll.sum()) / n if n else math.nan,
        "brier": float(stats.brier.sum()) / n if n else math.nan,
    }
    return metrics, bins


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (Guo et al. 2017)."""
    return ece_of_bins(reliability(per_example(probs, labels), n_bins))


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of ``-log p_y`` (natural log; ``inf`` if some ``p_y`` is 0)."""
    stats = per_example(probs, labels)
    return float(stats.nll.mean()) if len(stats.nll) else math.nan


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over examples of ``sum_c (p_c - 1[y = c])^2`` (0: certain and right; 2: certain and wrong)."""
    stats = per_example(probs, labels)
    return float(stats.brier.mean()) if len(stats.brier) else math.nan
