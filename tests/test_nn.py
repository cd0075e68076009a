"""Noise injection nodes: closed-form oracles for each layer kind, and the attach/detach contracts."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import (
    NestedNet,
    assert_eval_is_plain,
    assert_grads_reach,
    assert_no_input_mutation,
    assert_replayable,
    assert_state_dict_roundtrip,
    clone,
    small_cnn,
    small_mlp,
)
from ninr.errors import ConfigError
from ninr.nn import NINConv2d, NINLinear, attach_nins, detach_nins, force_noise, nin_nodes, niws

X_DENSE = torch.rand(6, 12, generator=torch.Generator().manual_seed(1))
X_IMG = torch.rand(5, 2, 8, 8, generator=torch.Generator().manual_seed(2))
X_NESTED = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3))

CASES = {
    "mlp": (small_mlp, X_DENSE, {}),
    "cnn-channel": (small_cnn, X_IMG, {"conv_mode": "channel"}),
    "cnn-channel-pixel": (small_cnn, X_IMG, {"conv_mode": "channel", "per": "pixel"}),
    "cnn-additive": (small_cnn, X_IMG, {"conv_mode": "additive", "example_input": X_IMG[:1]}),
    "cnn-additive-pixel": (small_cnn, X_IMG, {"conv_mode": "additive", "per": "pixel", "example_input": X_IMG[:1]}),
    "nested": (NestedNet, X_NESTED, {"example_input": X_NESTED[:1]}),
}


def attached(case: str, where: str = "all", sigma: float = 1.0, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    build, _, kwargs = CASES[case]
    plain = build()
    model = clone(plain)
    attach_nins(model, where, sigma=sigma, seed=seed, **kwargs)
    return model, plain


@pytest.mark.parametrize("where", ["input", "all"])
@pytest.mark.parametrize("case", list(CASES))
def test_noise_off_equals_plain_model_and_detach_restores_it(case: str, where: str) -> None:
    model, plain = attached(case, where)
    x = CASES[case][1]
    assert_eval_is_plain(model, plain, x)
    with force_noise(model, on=False):
        model.train()
        plain.train()
        assert torch.equal(model(x), plain(x))
    detach_nins(model)
    assert not nin_nodes(model)
    assert set(model.state_dict()) == set(plain.state_dict())
    model.train()
    assert torch.equal(model(x), plain(x))
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_every_niw_and_vanish_at_sigma_zero(case: str) -> None:
    x = CASES[case][1]
    model, _ = attached(case, "all", sigma=0.7)
    model.train()
    model(x).square().sum().backward()
    assert_grads_reach(niws(model))
    model0, plain = attached(case, "all", sigma=0.0)
    model0.train()
    out = model0(x)
    out.square().sum().backward()
    assert_grads_reach(niws(model0), zero=True)
    assert torch.equal(out, plain(x))


# The oracles below compute the node's output another way (a literal concatenation or ``conv(x + W_NI eps)``),
# summing the same float32 products in other orders: sums of at most 19 terms forward (C kh kw + the node) and of
# B H W = 5 x 8 x 8 = 320 terms in a weight gradient. Two orders of a sum of n terms differ by about sqrt(n) u times
# its terms' size (u = 2^-24; 2 n u at worst), ~1e-6 here. The tolerances (1e-6 dense, 1e-5 conv outputs, 1e-4
# relative on the gradients, whose terms are larger than their sums) sit 10x (gradients) to 50x (outputs) above the
# differences measured on AVX-512 and on AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2).


def test_dense_node_matches_closed_form() -> None:
    layer = nn.Linear(12, 5)
    attach_nins(layer, "all", sigma=0.5, seed=3)
    assert isinstance(layer, NINLinear)
    z = layer(X_DENSE)
    eps = layer.nin.last_noise
    assert eps is not None and eps.shape == (6,)
    expected = X_DENSE @ layer.weight.T + layer.bias + eps[:, None] * layer.nin.weight[None, :]
    torch.testing.assert_close(z, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("per", ["example", "pixel"])
def test_conv_channel_node_is_an_extra_input_channel(per: str) -> None:
    """Oracle: convolving [x, noise map] with [W, W_NI] stacked along input channels."""
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    attach_nins(conv, "all", sigma=1.3, per=per, conv_mode="channel", seed=4)
    assert isinstance(conv, NINConv2d)
    y = conv(X_IMG)
    eps = conv.nin.last_noise
    assert eps is not None
    noise_map = eps.view(-1, 1, 1, 1).expand(-1, 1, 8, 8) if per == "example" else eps
    stacked_w = torch.cat([conv.weight, conv.nin.weight], dim=1)
    expected = F.conv2d(torch.cat([X_IMG, noise_map], dim=1), stacked_w, conv.bias, 2, 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_conv_channel_node_respects_padding_mode() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
    attach_nins(conv, "all", per="pixel", conv_mode="channel", seed=5)
    y = conv(X_IMG)
    eps = conv.nin.last_noise
    assert eps is not None
    padded = F.pad(torch.cat([X_IMG, eps], dim=1), (1, 1, 1, 1), mode="reflect")
    expected = F.conv2d(padded, torch.cat([conv.weight, conv.nin.weight], dim=1), conv.bias)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("per", ["example", "pixel"])
def test_conv_additive_node_matches_closed_form(per: str, padding_mode: str) -> None:
    """Forward and every gradient equal those of ``conv(x + W_NI eps)`` computed literally.

    Per-example noise is computed as ``conv(x) + eps conv(W_NI)`` (linearity), so this pins that rewrite,
    the input's gradient included, for zero and reflect padding.
    """
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode)
    attach_nins(conv, "all", conv_mode="additive", per=per, seed=6, example_input=X_IMG[:1])
    assert conv.nin.weight.shape == (2, 8, 8)
    x = X_IMG.clone().requires_grad_(True)
    y = conv(x)
    eps = conv.nin.last_noise
    assert eps is not None
    e = eps.view(-1, 1, 1, 1) if per == "example" else eps
    params = (conv.weight, conv.bias, conv.nin.weight)
    x2 = X_IMG.clone().requires_grad_(True)
    inp = x2 + conv.nin.weight * e
    if padding_mode == "reflect":
        expected = F.conv2d(F.pad(inp, (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias)
    else:
        expected = F.conv2d(inp, conv.weight, conv.bias, 1, 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, *params), g)
    want = torch.autograd.grad(expected, (x2, *params), g)
    for a, b, name in zip(got, want, ("x", "weight", "bias", "niw"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_additive_mode_needs_an_example_input() -> None:
    with pytest.raises(ConfigError, match="example_input"):
        attach_nins(small_cnn(), "all", conv_mode="additive")
    # additive is the default (the paper's pixel-wise connection): the error names the way out
    with pytest.raises(ConfigError, match=r"example_input.*the default for conv layers.*conv_mode='channel'"):
        attach_nins(small_cnn(), "all")
    model = small_cnn()
    attach_nins(model, "all", example_input=X_IMG[:1])
    assert model.conv1.nin_mode == model.conv2.nin_mode == "additive"
    assert tuple(model.conv1.nin.weight.shape) == tuple(X_IMG.shape[1:])  # (C, H, W) of the input
    assert tuple(model.conv2.nin.weight.shape) == (4, *X_IMG.shape[2:])  # conv1's output map


def test_per_example_draws_are_independent_and_replayable() -> None:
    model = small_mlp()
    attach_nins(model, "input", sigma=1.0, seed=7)
    node = model.fc1.nin
    model.train()
    same = X_DENSE[:1].expand(64, -1)
    out = model(same)
    eps = node.last_noise
    assert eps is not None and eps.shape == (64,)
    assert torch.unique(eps).numel() == 64, "examples in one batch shared a draw"
    assert not torch.allclose(out[0], out[1])
    assert abs(float(torch.corrcoef(torch.stack([eps[:-1], eps[1:]]))[0, 1])) < 0.4
    assert_replayable(lambda: model(X_DENSE), lambda: node.reseed(7))
    state = node.get_rng_state()
    a = model(X_DENSE)
    node.set_rng_state(state)
    assert torch.equal(model(X_DENSE), a)
    with node.given_noise(torch.zeros(6)):
        model.eval()
        plain_out = model(X_DENSE)
        model.train()
        assert torch.equal(model(X_DENSE), plain_out)


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
def test_injected_noise_has_std_sigma(distribution: str) -> None:
    layer = nn.Linear(3, 2)
    attach_nins(layer, "all", sigma=0.3, distribution=distribution, seed=8)
    layer(torch.zeros(200_000, 3))
    eps = layer.nin.last_noise
    assert eps is not None
    assert abs(float(eps.mean())) < 0.003  # 4.5 standard errors of the mean (0.3 / sqrt(2e5))
    assert abs(float(eps.std()) - 0.3) < 0.003


def test_force_noise_overrides_mode_and_restores() -> None:
    model, plain = attached("mlp", "all")
    model.eval()
    with force_noise(model):
        a, b = model(X_DENSE), model(X_DENSE)
        assert not torch.equal(a, b)
    assert_eval_is_plain(model, plain, X_DENSE)
    assert all(node.force is None for node in nin_nodes(model).values())


def test_attach_report_input_and_all_on_sequential() -> None:
    model = small_mlp()
    report = attach_nins(model, "input", sigma=0.5, seed=0)
    assert report.layers == ["fc1"]
    assert report.nodes[0].niw_shape == (8,) and report.nodes[0].mode == "dense"
    assert "fc1" in str(report)
    model = small_mlp()
    assert attach_nins(model, "all").layers == ["fc1", "fc2", "out"]
    assert list(niws(model)) == ["fc1", "fc2", "out"]
    assert "fc2.nin.weight" in model.state_dict()


def test_attach_by_names_and_globs_on_nested_module() -> None:
    model = NestedNet()
    report = attach_nins(model, "input", example_input=X_NESTED[:1])
    assert report.layers == ["features.conv"], "input must follow call order when an example is given"
    assert report.nodes[0].kind == "conv2d"
    model = NestedNet()
    assert attach_nins(model, "features.*", conv_mode="channel").layers == ["features.conv"]
    model = NestedNet()
    assert attach_nins(model, ["head", "body.0"]).layers == ["head", "body.0"]
    model = NestedNet()
    assert attach_nins(model, "all", example_input=X_NESTED[:1]).layers == ["features.conv", "body.0", "head"]


def test_bad_attach_requests_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'fc1'"):
        attach_nins(small_mlp(), "fc_1")
    with pytest.raises(ConfigError, match=r"nn\.Linear or nn\.Conv2d"):
        attach_nins(nn.Sequential(nn.ReLU()), "all")
    model = small_mlp()
    attach_nins(model, "input")
    with pytest.raises(ConfigError, match="already has a noise injection node"):
        attach_nins(model, "input")
    with pytest.raises(ConfigError, match="sigma"):
        attach_nins(small_mlp(), "input", sigma=-1.0)
    with pytest.raises(ConfigError, match="did you mean 'gaussian'"):
        attach_nins(small_mlp(), "input", distribution="gausian")
    with pytest.raises(ConfigError, match="niw_init"):
        attach_nins(small_mlp(), "input", niw_init="xavier")

    class MyLinear(nn.Linear):
        pass

    with pytest.raises(ConfigError, match="MyLinear"):
        attach_nins(nn.Sequential(MyLinear(2, 2)), "all")


def test_niw_initialisation_schemes() -> None:
    layer = nn.Linear(400, 1000)
    attach_nins(layer, "all", seed=0)
    bound = 1 / math.sqrt(400)
    w = layer.nin.weight.detach()
    assert float(w.abs().max()) <= bound
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    zero = nn.Linear(4, 3)
    attach_nins(zero, "all", niw_init="zeros")
    assert torch.count_nonzero(zero.nin.weight) == 0
    scaled = nn.Linear(4, 10_000)
    attach_nins(scaled, "all", niw_init=0.2, seed=0)
    assert abs(float(scaled.nin.weight.detach().std()) - 0.2) < 0.01


def test_layer_niw_init_per_conv_mode() -> None:
    """Additive conv node: U(-sqrt(3/n), sqrt(3/n)) over its n = C H W pixels (std 1/sqrt(n)); channel mode: the
    conv's own U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Std within 10% (the sample std of n uniform draws has relative
    standard error sqrt(0.8 / n) / 2: 0.9% for n = 2352, 5% for the 32 x 9 = 288 channel-mode entries)."""
    x = torch.rand(2, 3, 28, 28)
    additive = nn.Conv2d(3, 32, 3, padding=1)
    attach_nins(additive, "all", conv_mode="additive", example_input=x, seed=0)
    w = additive.nin.weight.detach()
    n = 3 * 28 * 28
    assert tuple(w.shape) == (3, 28, 28)
    assert float(w.abs().max()) <= math.sqrt(3 / n)
    assert float(w.std()) == pytest.approx(1 / math.sqrt(n), rel=0.1)
    channel = nn.Conv2d(3, 32, 3, padding=1)
    attach_nins(channel, "all", conv_mode="channel", seed=0)
    w = channel.nin.weight.detach()
    bound = 1 / math.sqrt(3 * 9)
    assert float(w.abs().max()) <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)


@torch.no_grad()
def _noise_to_signal(layer: nn.Module, shape: tuple[int, ...]) -> tuple[float, float]:
    """Mean squares over the layer's output units of its response to white unit-variance input (the expectation
    over the input, exact: ``|w_j|^2`` per unit of a dense layer, the in-bounds taps' ``sum w^2`` per unit of a
    conv) and of the node's contribution at eps = 1 (bias zero)."""
    layer.eval()
    zero = torch.zeros(1, *shape)
    layer.nin.force = True  # noise on, the draw at 1
    with layer.nin.given_noise(torch.ones(1)):
        noise = layer(zero) - layer.bias.view(1, -1, *[1] * (len(shape) - 1))
    layer.nin.force = None
    if isinstance(layer, nn.Linear):
        signal = layer.weight.pow(2).sum(dim=1)
    else:
        signal = F.conv2d(torch.ones(1, *shape), layer.weight.pow(2), padding=layer.padding)
    return float(signal.mean()), float(noise.pow(2).mean())


def test_additive_conv_niw_init_gives_the_dense_nodes_noise_to_signal_ratio() -> None:
    """One sigma means one noise-to-signal ratio after the layer (ninr.nn.nin.layer_niw_bound): a 3x3 conv with an
    additive node on a 1x28x28 map against a dense layer of fan-in 784, both on white unit-variance input.

    Expected ratio of the two noise-to-signal ratios: 1 (zero padding trims noise and signal alike). Sampling
    spread, pooled over 8 seeds: the dense node's 2048 NIW entries (relative standard error of a mean square of
    uniform draws sqrt(0.8 / 2048) = 2.0%, 1.0% on its square root), the conv node's 6272 (0.6%), the cross terms
    of the convolved NIW map (~0.4%); the filters' squared norms are shared by noise and signal and cancel. About
    1.2% in all: the bound of 6% is 5 standard errors. The conv's own fan-in (U(+-1/3)) gives 5.4x.
    """
    dense_s = dense_n = conv_s = conv_n = 0.0
    for seed in range(8):
        torch.manual_seed(seed)
        dense, conv = nn.Linear(784, 256), nn.Conv2d(1, 32, 3, padding=1)
        for layer in (dense, conv):
            nn.init.zeros_(layer.bias)
        attach_nins(dense, "all", seed=seed)
        attach_nins(conv, "all", conv_mode="additive", example_input=torch.zeros(1, 1, 28, 28), seed=seed)
        s, n = _noise_to_signal(dense, (784,))
        dense_s, dense_n = dense_s + s, dense_n + n
        s, n = _noise_to_signal(conv, (1, 28, 28))
        conv_s, conv_n = conv_s + s, conv_n + n
    dense_ratio, conv_ratio = math.sqrt(dense_n / dense_s), math.sqrt(conv_n / conv_s)
    assert dense_ratio == pytest.approx(1 / 28, rel=0.06)  # sigma / sqrt(fan_in) for unit-variance inputs
    assert conv_ratio / dense_ratio == pytest.approx(1.0, abs=0.06)


def test_attach_is_deterministic_given_a_seed() -> None:
    a, _ = attached("cnn-channel", seed=11)
    b, _ = attached("cnn-channel", seed=11)
    a.train()
    b.train()
    assert torch.equal(a(X_IMG), b(X_IMG))
    for name in niws(a):
        assert torch.equal(niws(a)[name], niws(b)[name])


@pytest.mark.parametrize("case", ["mlp", "cnn-channel", "cnn-additive"])
def test_state_dict_roundtrip_and_pickle(case: str) -> None:
    model, _ = attached(case, "all", seed=1)
    fresh, _ = attached(case, "all", seed=2)
    assert_state_dict_roundtrip(model, fresh, CASES[case][1])
    restored = pickle.loads(pickle.dumps(model))
    assert_eval_is_plain(restored, model, CASES[case][1])
    assert isinstance(copy.deepcopy(model), nn.Module)


def test_forward_never_mutates_its_input() -> None:
    model, _ = attached("cnn-additive", "all")
    model.train()
    assert_no_input_mutation(model, X_IMG.clone())
