"""Dropout, activation noise and weight noise in a stack: each run draws its own noise, as it does alone.

Two kinds of check. The distribution of what a stacked member draws (dropout's keep fraction, independence
between members, the expectation kept by the 1 / (1 - p) scale, the noise's mean and std), with binomial and
normal tolerances of 5 standard errors: a correct sampler fails one such check with probability ~6e-7. And
stacked training against the same runs trained alone: a seeded member draws exactly the numbers its lone
module draws (the same generator, shape and dtype, in the same order), so the only difference between the
two paths is the stacked products' float rounding, and records and weights are compared with the tolerances
of ``tests/test_stacked.py`` (``RTOL``, accuracies within one example; the analysis is there).
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from ninr.methods.base import SetupContext
from ninr.methods.baselines import Dropout
from ninr.models.registry import build_model
from ninr.nn.modes import force_noise
from ninr.nn.noise_layers import ActivationNoise, NoiseDropout, WeightNoise
from ninr.train import MethodSpec, train, train_many, train_stacked
from ninr.train.backends.stacked_net import NotStackableError, StackedNet
from ninr.train.backends.stacked_noise import output_factors, stack_draws, weight_draws
from ninr.train.stacking import group_stackable, solo_reason, stack_key
from test_stacked import DATA, assert_same_as_alone, assert_same_records, cfg

pytestmark = pytest.mark.usefixtures("one_thread")

Z = 5.0
"""Standard errors allowed by the distribution checks (two-sided normal tail at 5 sigma: 5.7e-7)."""

K, SHAPE = 8, (64, 512)
N = math.prod(SHAPE)


def dropout_members(rate: float) -> list[NoiseDropout | None]:
    return [NoiseDropout(rate, seed=100 + k) for k in range(K)]


def test_stacked_dropout_keep_fraction_independence_and_expectation() -> None:
    rate = 0.3
    like = torch.empty(SHAPE)
    mult, add = output_factors(dropout_members(rate), SHAPE, like)
    assert add is None and mult is not None and mult.shape == (K, *SHAPE)
    scale = 1.0 / (1.0 - rate)
    assert torch.unique(mult).tolist() == [0.0, pytest.approx(scale)]  # inverted dropout: 0 or 1/(1-p)
    keep = (mult > 0).double().view(K, -1)
    fraction = keep.mean(dim=1)
    assert (fraction - (1 - rate)).abs().max() <= Z * math.sqrt(rate * (1 - rate) / N)  # binomial, per member
    # Independent members: each pair's mask correlation is ~N(0, 1/N).
    centred = keep - keep.mean(dim=1, keepdim=True)
    corr = (centred @ centred.T) / (centred.norm(dim=1)[:, None] * centred.norm(dim=1)[None, :])
    off = corr[~torch.eye(K, dtype=torch.bool)]
    assert off.abs().max() <= Z / math.sqrt(N)
    # E[mask * scale] = 1: the expectation of each unit is kept; Var(mask * scale) = p / (1 - p) per element.
    mean = mult.double().view(K, -1).mean(dim=1)
    assert (mean - 1).abs().max() <= Z * math.sqrt(rate / (1 - rate) / N)


def test_each_member_draws_what_its_module_draws_alone() -> None:
    """Same generator state, shape and dtype: the member's mask is the lone module's, element for element."""
    members = dropout_members(0.5)
    alone = [NoiseDropout(0.5, seed=100 + k) for k in range(K)]
    mult, _ = output_factors(members, SHAPE, torch.empty(SHAPE))
    assert mult is not None
    ones = torch.ones(SHAPE)
    for k in range(K):
        assert torch.equal(mult[k], alone[k](ones))
    # The streams advance as alone: the next draws agree too.
    mult2, _ = output_factors(members, SHAPE, torch.empty(SHAPE))
    assert mult2 is not None and torch.equal(mult2[3], alone[3](ones))


@pytest.mark.parametrize("mode", ["multiplicative", "additive"])
def test_stacked_activation_noise_moments_and_neutral_members(mode: str) -> None:
    s = 0.7
    members: list[ActivationNoise | None] = [ActivationNoise(s, mode=mode, seed=k) for k in range(K - 1)]
    members.append(None)  # a run without noise at this layer
    mult, add = output_factors(members, SHAPE, torch.empty(SHAPE))
    noise = (mult - 1 if mode == "multiplicative" else add).double().view(K, -1)  # type: ignore[operator]
    assert (mult is None) == (mode == "additive") and (add is None) == (mode == "multiplicative")
    assert torch.equal(noise[-1], torch.zeros(N, dtype=torch.float64))  # x * 1 or x + 0: its slice unchanged
    mean, std = noise[:-1].mean(dim=1), noise[:-1].std(dim=1)
    assert mean.abs().max() <= Z * s / math.sqrt(N)
    assert (std - s).abs().max() <= Z * s / math.sqrt(2 * N)  # std of a sample std of Gaussians: s / sqrt(2N)
    assert float(torch.corrcoef(noise[:-1].float()).fill_diagonal_(0).abs().max()) <= Z / math.sqrt(N)


def test_noise_off_draws_nothing() -> None:
    members: list[NoiseDropout | None] = list(dropout_members(0.5))
    for m in members[:4]:
        assert m is not None
        m.eval()
    members[4] = NoiseDropout(0.0, seed=104)  # rate 0: no draw, as alone
    mult, _ = output_factors(members, SHAPE, torch.empty(SHAPE))
    assert mult is not None and torch.equal(mult[:5], torch.ones(5, *SHAPE))
    assert output_factors(members[:5], SHAPE, torch.empty(SHAPE)) == (None, None)
    # Their streams did not move: back in training, they draw a fresh module's first draw.
    for k in range(4):
        members[k].train()  # type: ignore[union-attr]
    again, _ = output_factors(members[:4], SHAPE, torch.empty(SHAPE))
    fresh, _ = output_factors(dropout_members(0.5)[:4], SHAPE, torch.empty(SHAPE))
    assert again is not None and fresh is not None and torch.equal(again, fresh)


def test_stacked_weight_noise_draws_in_the_stacked_layout() -> None:
    layers = [torch.nn.Linear(6, 4) for _ in range(3)]
    mods: list[WeightNoise | None] = [WeightNoise(("weight", "bias"), 0.1, seed=k) for k in range(2)] + [None]
    alone = [WeightNoise(("weight", "bias"), 0.1, seed=k) for k in range(2)]
    draws = weight_draws(mods, layers)
    assert draws["weight"][2] is None and draws["bias"][2] is None
    for k in range(2):  # the lone module's draws, in its order (weight, then bias)
        alone[k].attach(torch.nn.Linear(6, 4))
        alone[k]._shadow(torch.nn.Linear(6, 4), ())
        assert torch.equal(draws["weight"][k], alone[k].last_noise["weight"])  # type: ignore[arg-type]
        assert torch.equal(draws["bias"][k], alone[k].last_noise["bias"])  # type: ignore[arg-type]
    stacked_wt = stack_draws(draws["weight"], torch.empty(3, 6, 4), transpose=True, flat=False)
    assert stacked_wt.shape == (3, 6, 4) and torch.equal(stacked_wt[1], draws["weight"][1].t())  # type: ignore[union-attr]
    assert torch.equal(stacked_wt[2], torch.zeros(6, 4))
    conv = stack_draws([torch.ones(2, 3, 1, 1), None], torch.empty(4, 3, 1, 1), transpose=False, flat=True)
    assert conv.shape == (4, 3, 1, 1) and float(conv[:2].sum()) == 6 and float(conv[2:].abs().sum()) == 0


NOISY = [
    (MethodSpec("dropout", {"rate": 0.3}),),
    (),
    (MethodSpec("activation-noise", {"scale": 0.5}),),
    (MethodSpec("activation-noise", {"scale": 0.2, "mode": "additive", "distribution": "uniform"}),),
    (MethodSpec("weight-noise", {"scale": 0.02, "which": "all"}),),
    (MethodSpec("dropout", {"rate": 0.2, "where": "act2"}), MethodSpec("in-ninr", {"sigma": 0.5})),
    (MethodSpec("dropout", {"rate": 0.1}), MethodSpec("activation-noise"), MethodSpec("weight-noise")),
]


def test_dropout_and_noise_runs_stack_with_any_partner_and_equal_their_runs_alone() -> None:
    configs = [cfg("mlp", m, seed=i, lr=0.05 + 0.01 * i) for i, m in enumerate(NOISY)]
    assert all(solo_reason(c) is None for c in configs) and group_stackable(configs) == [list(range(len(NOISY)))]
    results = train_stacked(configs, data=DATA)
    assert [r.setup["stacked"]["runs"] for r in results] == [len(NOISY)] * len(NOISY)
    assert_same_as_alone(configs, results)


def test_cnn_dropout_and_weight_noise_in_the_conv_layout() -> None:
    methods = [
        (MethodSpec("dropout", {"rate": 0.3}),),
        (MethodSpec("weight-noise", {"scale": 0.05, "which": "all"}), MethodSpec("activation-noise")),
    ]
    configs = [cfg("cnn", m, seed=s, max_steps=4, epochs=1) for s, m in enumerate(methods)]
    assert_same_as_alone(configs, train_stacked(configs, data=DATA))


def test_a_stacked_dropout_run_reaches_the_accuracy_of_its_lone_run() -> None:
    """A longer run (2 epochs of 96 examples at batch 16: 12 steps, then the 48-image test set): the records agree
    as in the short runs, and the final test accuracy within one example (a prediction flips only where two
    logits lie within the paths' ~1e-6 relative difference)."""
    configs = [cfg("mlp", (MethodSpec("dropout", {"rate": 0.5}),), seed=s, max_steps=None) for s in range(3)]
    results = train_many(configs, data=DATA)
    for config, result in zip(configs, results, strict=True):
        alone = train(config, data=DATA)
        assert result.setup["stacked"]["runs"] == 3
        assert abs(result.final["test_acc"] - alone.final["test_acc"]) <= 1 / len(DATA.y_test) + 1e-12
        assert_same_records(alone.records, result.records)


def test_noise_follows_each_runs_mode_in_the_stack() -> None:
    """Noise off in eval mode (the stack equals the plain models), forced on by force_noise, per run."""
    x = torch.rand(3, 5, 1, 16, 16)
    models = []
    for s in range(3):
        m = build_model("mlp", (1, 16, 16), 10, width=16)
        if s < 2:
            Dropout(rate=0.5).configure_model(m, SetupContext(s, torch.rand(2, 1, 16, 16)))
        models.append(m)
    net = StackedNet(models)
    net.train(False)
    out = net(x)
    for k in range(3):
        assert torch.allclose(out[k], models[k](x[k]), rtol=1e-5, atol=1e-6)
    with force_noise(models[0]):
        noisy = net(x)
    assert not torch.allclose(noisy[0], out[0]) and torch.equal(noisy[1:], out[1:])


def test_other_hooks_and_noise_modules_still_refuse() -> None:
    model = build_model("mlp", (1, 16, 16), 10, width=8)
    model.act1.register_forward_hook(lambda m, i, o: o)
    with pytest.raises(NotStackableError, match="forward hooks other than"):
        StackedNet([model])
    model = build_model("mlp", (1, 16, 16), 10, width=8)
    Dropout().configure_model(model, SetupContext(0, torch.rand(2, 1, 16, 16)))
    model.act1.dropout.register_forward_hook(lambda m, i, o: o)  # a hook on the noise module itself
    with pytest.raises(NotStackableError, match="forward hooks other than"):
        StackedNet([model])
    model = build_model("mlp", (1, 16, 16), 10, width=8)
    model.act1.add_module("noise", ActivationNoise(0.1))  # a child that no hook applies
    with pytest.raises(NotStackableError, match="ActivationNoise noise module"):
        StackedNet([model])


def test_dropout_groups_with_plain_runs(caplog: pytest.LogCaptureFixture) -> None:
    a = cfg("mlp", seed=0)
    d = a.replace(methods=(MethodSpec("dropout"),))
    assert stack_key(d) == stack_key(a)
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        results = train_many([d, a.replace(seed=1)], data=DATA)
    assert all(r.setup["stacked"]["runs"] == 2 for r in results)
    assert "trained 2 runs as one stack" in caplog.text
