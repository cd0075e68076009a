"""Tests of ninr.robustness.attacks: closed forms, EOT, argument checks, a trained model, APGD and Square.

The contracts every registered attack keeps (the epsilon ball and [0, 1], epsilon 0 is the input, no input
mutation, eval mode during the attack, modes, parameters and gradients restored, draws only from its
generator) are checked in tests/test_registries.py; the same contracts for every floating dtype are
checked here (``test_attack_contracts_hold_in_every_dtype``).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from helpers import small_cnn
from ninr.data import load_dataset
from ninr.errors import ConfigError, UnknownNameError
from ninr.nn import attach_nins, force_noise
from ninr.robustness.attacks import (
    ATTACKS,
    EOT_DEFAULT,
    NORMS,
    apgd,
    apgd_checkpoints,
    attack,
    fgsm,
    pgd,
    round_toward,
    square,
    square_fraction,
    square_pattern,
)
from ninr.train import TrainConfig, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = [0.0, 0.02, 0.05, 0.1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained for 2 epochs on a noisy synthetic task (well under 1 s), 200 test examples."""
    data = load_dataset("synthetic", n_train=512, n_test=200, noise=1.0)
    config = TrainConfig(dataset="synthetic", model_kwargs={"width": 64, "depth": 1}, epochs=2, lr=0.1)
    return train(config, data=data).model.eval(), data.x_test, data.y_test


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return evaluate(model, x, y)[1]


def test_accuracy_ordering_on_a_trained_model(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = trained
    clean = _accuracy(model, x, y)
    assert clean > 0.8, "the fixture model should have learnt the task"
    adv_f = fgsm(model, x, y, [0.02, 0.05])
    adv_p = pgd(model, x, y, [0.02, 0.05], steps=10, generator=gen())
    for i in range(2):
        acc_f, acc_p = _accuracy(model, adv_f[i], y), _accuracy(model, adv_p[i], y)
        assert acc_p <= acc_f <= clean, (i, acc_p, acc_f, clean)
    assert _accuracy(model, adv_p[1], y) < clean - 0.2, "PGD at 0.05 should hurt"


def test_fgsm_closed_form_on_a_two_class_linear_model() -> None:
    """For logits W x + b with two classes, the loss gradient is (1 - p_y)(w_other - w_y): its sign is known."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.rand(8, 1, 4, 4, generator=gen(1))
    y = torch.randint(0, 2, (8,), generator=gen(2))
    w = model[1].weight.detach()
    direction = (w[1 - y] - w[y]).sign().view(8, 1, 4, 4)
    expected = (x + 0.05 * direction).clamp(0, 1)
    torch.testing.assert_close(fgsm(model, x, y, [0.05])[0], expected)


def test_many_epsilons_equal_separate_calls(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = trained
    together = fgsm(model, x[:32], y[:32], [0.03, 0.07], norm="l2")
    for i, eps in enumerate([0.03, 0.07]):
        torch.testing.assert_close(together[i], fgsm(model, x[:32], y[:32], [eps], norm="l2")[0])


class _Counting(nn.Module):
    """A linear classifier with a noise module: counts forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(16, 3)))
        attach_nins(self.net, "all", sigma=0.5, seed=0)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def test_eot_averages_gradients_over_noise_draws() -> None:
    model = _Counting().eval()
    x, y = torch.rand(4, 1, 4, 4, generator=gen(3)), torch.tensor([0, 1, 2, 0])
    pgd(model, x, y, [0.1], steps=2, generator=gen())
    assert model.calls == 2, "noise off: one gradient sample per step"
    model.calls = 0
    with force_noise(model, True):
        pgd(model, x, y, [0.1], steps=2, generator=gen())
        assert model.calls == 2 * EOT_DEFAULT
        model.calls = 0
        fgsm(model, x, y, [0.1], eot_samples=3)
        assert model.calls == 3


def test_random_start_is_reproducible(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = trained
    a = pgd(model, x[:16], y[:16], [0.05], steps=1, generator=gen(4))
    assert torch.equal(a, pgd(model, x[:16], y[:16], [0.05], steps=1, generator=gen(4)))
    assert not torch.equal(a, pgd(model, x[:16], y[:16], [0.05], steps=1, generator=gen(5)))


def test_bad_arguments(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = trained
    x, y = x[:4], y[:4]
    with pytest.raises(ConfigError, match=r"`epsilon` must be a finite number >= 0, got -0\.1"):
        fgsm(model, x, y, [0.1, -0.1])
    with pytest.raises(ConfigError, match="epsilons"):
        fgsm(model, x, y, [])
    with pytest.raises(ConfigError, match="norm"):
        pgd(model, x, y, [0.1], norm="l1")
    with pytest.raises(UnknownNameError, match="did you mean 'pgd'"):
        attack("pdg", model, x, y, [0.1])
    with pytest.raises(ConfigError, match="`y` must be"):
        fgsm(model, x, y.float(), [0.1])
    with pytest.raises(ConfigError, match="inference_mode"), torch.inference_mode():
        fgsm(model, x, y, [0.1])


# ----------------------------------------------------------------------------- every attack, every dtype

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]  # torch runs the small CNN in all four on CPU
CHEAP = {"steps": 5, "queries": 50}  # budget options, where an attack takes them: the contracts hold at any budget


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_contracts_hold_in_every_dtype(name: str, norm: str, dtype: torch.dtype) -> None:
    fn = ATTACKS.get(name)
    params = inspect.signature(fn).parameters
    options: dict[str, Any] = {k: v for k, v in CHEAP.items() if k in params}
    if "generator" in params:
        options["generator"] = gen(4)
    model = small_cnn(channels=1, size=8, out=3).to(dtype).eval()
    x = (0.2 + 0.6 * torch.rand(6, 1, 8, 8, generator=gen(1))).to(dtype)
    y = torch.randint(0, 3, (6,), generator=gen(2))
    before = x.clone()
    adv = fn(model, x, y, EPS, norm=norm, **options)
    assert torch.equal(x, before)
    assert adv.shape == (len(EPS), *x.shape) and adv.dtype == dtype
    assert torch.equal(adv[0], x), "epsilon 0 must return the input"
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    delta = (adv.double() - x.double()).flatten(2)  # measured exactly, in float64
    size = delta.norm(dim=2) if norm == "l2" else delta.abs().amax(dim=2)
    for i, eps in enumerate(EPS[1:], start=1):
        # The iterates live in float32 (float64 for float64 inputs) and the cast to the input's dtype rounds
        # every pixel towards the input, so the ball holds as it does in float32: 1e-5 relative and 1e-6
        # absolute cover float32's projection error (see tests/test_registries.py).
        assert float(size[i].max()) <= eps * (1 + 1e-5) + 1e-6
        # The budget is used: L-inf loses at most one ulp of a pixel below 1 to the cast (2^-8 in bfloat16,
        # 0.2 eps at eps = 0.02); an L2 budget spread over 64 pixels is comparable to bfloat16's ulp, so for
        # the 16-bit types only a nonzero move is required there.
        if norm == "linf" or dtype in (torch.float32, torch.float64):
            assert float(size[i].max()) > 0.5 * eps
        else:
            assert float(size[i].max()) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_round_toward_never_moves_away_from_the_reference(dtype: torch.dtype) -> None:
    g = gen(8)
    x = torch.rand(10_000, generator=g).to(dtype).to(torch.float64)  # representable in dtype
    v = (x + 0.02 * (torch.rand(10_000, generator=g, dtype=torch.float64) * 2 - 1)).clamp(0, 1)
    out = round_toward(v, x, dtype).to(torch.float64)
    assert ((out - x).abs() <= (v - x).abs()).all()
    assert ((out - x) * (v - x) >= 0).all(), "the rounded value lies on x's side of v"
    ulp = torch.finfo(dtype).eps  # spacing at 1, the largest spacing in [0, 1]
    assert float((out - v).abs().max()) <= ulp
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    nearest = v.to(dtype).to(torch.float64)
    assert float((out == nearest).double().mean()) > 0.4, "about half the values are already on x's side"


def test_one_seed_gives_the_same_draws_in_every_dtype() -> None:
    """Random starts are drawn in float32 and cast, so float32 and float64 runs start from the same point."""
    model = small_cnn(channels=1, size=8, out=3).eval()
    x = 0.2 + 0.6 * torch.rand(6, 1, 8, 8, generator=gen(1))
    y = torch.randint(0, 3, (6,), generator=gen(2))
    a32 = pgd(model, x, y, [0.05], steps=1, step_ratio=1e-9, generator=gen(3))
    a64 = pgd(model.double(), x.double(), y, [0.05], steps=1, step_ratio=1e-9, generator=gen(3))
    # the same uniforms scaled by 0.05 in two precisions, plus steps of 5e-11: float32 rounding, 6e-8 at 1
    torch.testing.assert_close(a64, a32.double(), atol=2e-7, rtol=0)


# ----------------------------------------------------------------------------- APGD


def test_apgd_checkpoints_follow_the_paper() -> None:
    # p_j: 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce and Hein 2020, section 3.2)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert apgd_checkpoints(1) == []


@pytest.mark.parametrize("norm", NORMS)
def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_gradients(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor], norm: str
) -> None:
    """APGD with 10 steps takes 11 gradients (its start's too); PGD gets 11 steps. Robust accuracy: APGD <= PGD."""
    model, x, y = trained
    eps = [0.02, 0.05] if norm == "linf" else [0.3, 1.0]
    adv_a = apgd(model, x, y, eps, norm=norm, steps=10, generator=gen())
    adv_p = pgd(model, x, y, eps, norm=norm, steps=11, generator=gen())
    clean = _accuracy(model, x, y)
    for i in range(len(eps)):
        acc_a, acc_p = _accuracy(model, adv_a[i], y), _accuracy(model, adv_p[i], y)
        assert acc_a <= acc_p < clean, (norm, eps[i], acc_a, acc_p, clean)


@pytest.mark.parametrize("norm", NORMS)
def test_apgd_finds_the_maximiser_for_a_linear_model(norm: str) -> None:
    """For two-class logits W x + b the cross-entropy grows along d = w_other - w_y: its maximiser on the ball
    is x + eps sign(d) (L-inf) or x + eps d / ||d|| (L2). Far from the boundary nothing is misclassified, so
    APGD returns its point of highest loss, which must be that maximiser."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    with torch.no_grad():
        model[1].weight.mul_(5.0)
    x = 0.3 + 0.4 * torch.rand(8, 1, 4, 4, generator=gen(1), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # correctly classified, with margins far above what eps can undo
    w = model[1].weight.detach()
    d = (w[1 - y] - w[y]).view(8, 1, 4, 4)
    eps = 0.01 if norm == "linf" else 0.05
    expected = x + eps * (d.sign() if norm == "linf" else d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    # L2 from the input: the first step (2 eps along d) projects exactly onto the maximiser; a random start
    # would approach it only as the steps shrink
    adv = apgd(model, x, y, [eps], norm=norm, steps=20, random_start=norm == "linf", generator=gen(2))[0]
    with torch.no_grad():
        assert (model(adv).argmax(dim=1) == y).all(), "the test needs points that stay correctly classified"
    torch.testing.assert_close(adv, expected, atol=1e-12, rtol=0)


def test_apgd_restarts_only_improve(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    """With one generator the first run is the same; a second run only replaces points it beats."""
    model, x, y = trained
    one = apgd(model, x, y, [0.05], steps=5, restarts=1, generator=gen(6))[0]
    two = apgd(model, x, y, [0.05], steps=5, restarts=2, generator=gen(6))[0]
    with torch.no_grad():
        fooled_one = model(one).argmax(dim=1) != y
        fooled_two = model(two).argmax(dim=1) != y
    assert (fooled_two | ~fooled_one).all(), "a point fooled by the first run stays fooled"
    assert torch.equal(one[fooled_one], two[fooled_one])


def test_apgd_eot_and_bad_arguments() -> None:
    model = _Counting().eval()
    x, y = torch.rand(4, 1, 4, 4, generator=gen(3)), torch.tensor([0, 1, 2, 0])
    apgd(model, x, y, [0.1], steps=3, generator=gen())
    assert model.calls == 4, "noise off: the start and 3 steps, one pass each"
    model.calls = 0
    with force_noise(model, True):
        apgd(model, x, y, [0.1], steps=3, generator=gen())
    assert model.calls == 4 * EOT_DEFAULT
    with pytest.raises(ConfigError, match="`momentum` must be a number in"):
        apgd(model, x, y, [0.1], momentum=1.5)
    with pytest.raises(ConfigError, match="`restarts` must be an integer >= 1, got 0"):
        apgd(model, x, y, [0.1], restarts=0)


# ----------------------------------------------------------------------------- Square


class _NoGradients(nn.Module):
    """Wraps a model: records whether each forward pass had autograd on, counts backward passes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_enabled: list[bool] = []
        self.backwards = 0
        self.register_full_backward_hook(lambda *_: self._count())

    def _count(self) -> None:
        self.backwards += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.inner(x)


@pytest.mark.parametrize("norm", NORMS)
def test_square_never_asks_for_gradients(norm: str) -> None:
    model = _NoGradients(small_cnn(channels=1, size=8, out=3)).eval()
    x = 0.2 + 0.6 * torch.rand(6, 1, 8, 8, generator=gen(1))
    y = torch.randint(0, 3, (6,), generator=gen(2))
    adv = square(model, x, y, [0.1], norm=norm, queries=20, generator=gen(3))
    assert model.grad_enabled and not any(model.grad_enabled) and model.backwards == 0
    with torch.inference_mode():  # gradient attacks refuse inference mode; Square needs no autograd at all
        again = square(model, x, y, [0.1], norm=norm, queries=20, generator=gen(3))
    assert torch.equal(adv, again)
    pgd(model, x, y, [0.1], steps=1, generator=gen(3))  # the instrument sees a gradient attack's backward pass
    assert model.backwards == 1 and model.grad_enabled[-1]


class _Quantized(nn.Module):
    """Rounds its input to 8 levels first: the input gradient is zero almost everywhere."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 8) / 8)


def test_square_breaks_a_model_whose_gradients_are_masked(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    inner, x, y = trained
    model = _Quantized(inner).eval()
    x, y = x[:100], y[:100]
    clean = _accuracy(model, x, y)
    adv_p = pgd(model, x, y, [0.1], steps=10, generator=gen())[0]
    adv_s = square(model, x, y, [0.1], queries=100, generator=gen())[0]
    # PGD's steps are sign(0) = 0: only its random start moves the points. On this fixture (clean 0.86) PGD
    # gives 0.88 and Square with 100 queries 0.44-0.50 over generator seeds 0-2; the thresholds sit between.
    assert _accuracy(model, adv_p, y) > clean - 0.1
    assert _accuracy(model, adv_s, y) < clean - 0.2


@pytest.mark.parametrize("norm", NORMS)
def test_square_lowers_accuracy_and_is_reproducible(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor], norm: str
) -> None:
    model, x, y = trained
    x, y = x[:64], y[:64]
    eps = [0.05] if norm == "linf" else [1.0]
    adv = square(model, x, y, eps, norm=norm, queries=100, generator=gen(1))
    assert torch.equal(adv, square(model, x, y, eps, norm=norm, queries=100, generator=gen(1)))
    assert not torch.equal(adv, square(model, x, y, eps, norm=norm, queries=100, generator=gen(2)))
    assert _accuracy(model, adv[0], y) < _accuracy(model, x, y)


def test_square_schedule_and_pattern() -> None:
    # p halves after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000
    assert [square_fraction(0.8, i, 10_000) for i in (0, 10, 11, 50, 51, 8000, 8001)] == [
        0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512
    ]  # fmt: skip
    for size in (1, 2, 5, 8):
        pat = square_pattern(size)
        assert pat.shape == (size, size) and float(pat.norm()) == pytest.approx(1.0, abs=1e-12)
        top, bottom = pat[: size // 2], pat[size // 2 :]
        assert (top > 0).all() and (bottom < 0).all()
        assert float(bottom.abs().max()) == float(bottom[(size - size // 2) // 2, size // 2].abs())  # peak at centre


def test_square_eot_and_bad_arguments() -> None:
    model = _Counting().eval()
    x, y = torch.rand(4, 1, 4, 4, generator=gen(3)), torch.tensor([0, 1, 2, 0])
    with force_noise(model, True):
        square(model, x, y, [1e-4], queries=5, eot_samples=3, generator=gen())
    # a budget of 1e-4 cannot flip these margins: every evaluation runs, 5 queries x 3 draws
    assert model.calls == 15
    with pytest.raises(ConfigError, match="`p_init` must be a number in"):
        square(model, x, y, [0.1], p_init=0.0)
    with pytest.raises(ConfigError, match="`queries` must be an integer >= 1"):
        square(model, x, y, [0.1], queries=0)
