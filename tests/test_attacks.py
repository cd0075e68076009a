"""Tests of ninr.robustness.attacks: a closed form, EOT, argument checks, and a trained model.

The contracts every registered attack keeps (the epsilon ball and [0, 1], epsilon 0 is the input, no input
mutation, eval mode during the attack, modes, parameters and gradients restored, draws only from its
generator) are checked in tests/test_registries.py.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from ninr.data import load_dataset
from ninr.errors import ConfigError, UnknownNameError
from ninr.nn import attach_nins, force_noise
from ninr.robustness.attacks import EOT_DEFAULT, attack, fgsm, pgd
from ninr.train import TrainConfig, evaluate, train

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
