"""Pure perturbation ops and the noise modules: closed forms, statistics, modes, and the weight-noise contract."""

from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
from torch import nn

from helpers import assert_eval_is_plain, assert_no_input_mutation, assert_replayable, clone, small_cnn, small_mlp
from ninr.errors import ConfigError
from ninr.functional.perturb import add_noise, corrupt_batch, dropout, perturb_tensors
from ninr.nn import ActivationNoise, InputNoise, NoiseDropout, WeightNoise, force_noise, noise_modules

N = 400_000
Z = 5.0  # standard errors allowed in statistical checks


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- functional ---------------------------------------------------------------------------------------------


def test_additive_and_multiplicative_noise_closed_forms() -> None:
    x = torch.full((N,), 2.0, dtype=torch.float64)
    add = add_noise(x, scale=0.3, generator=gen(1))
    eps = torch.randn(N, generator=gen(1), dtype=torch.float64) * 0.3
    assert torch.equal(add, x + eps)
    mul = add_noise(x, scale=0.3, mode="multiplicative", generator=gen(1))
    assert torch.allclose(mul, x * (1 + eps))
    assert abs(float(mul.std()) - 0.6) < Z * 0.6 / math.sqrt(2 * N)  # std of 2 (1 + 0.3 eps) is 0.6


def test_scale_zero_is_the_identity_and_ops_never_mutate_inputs() -> None:
    x = torch.rand(8, 5)
    assert add_noise(x, scale=0.0) is x
    assert corrupt_batch(x, strength=0.0) is x
    assert dropout(x, rate=0.0) is x
    assert_no_input_mutation(lambda t: add_noise(t, scale=1.0, mode="multiplicative"), x)
    assert_no_input_mutation(lambda t: corrupt_batch(t, strength=1.0, fraction=0.5), x)
    assert_no_input_mutation(lambda t: dropout(t, rate=0.5), x)
    assert_no_input_mutation(lambda t: perturb_tensors({"w": t}, scale=1.0), x)
    with pytest.raises(ConfigError, match="`mode`"):
        add_noise(x, scale=1.0, mode="both")


def test_corrupt_batch_touches_exactly_the_fraction_and_clips() -> None:
    x = torch.full((40, 1, 4, 4), 0.5)
    out = corrupt_batch(x, strength=0.3, fraction=0.25, generator=gen(2))
    changed = (out != x).flatten(1).any(dim=1)
    assert int(changed.sum()) == 10
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(corrupt_batch(x, strength=5.0, generator=gen(2)).max()) == 1.0  # clipped at the pixel range
    unclipped = corrupt_batch(x, strength=5.0, clip=None, generator=gen(2))
    assert float(unclipped.max()) > 1.0


def test_corrupt_batch_noise_has_std_strength_away_from_the_clip() -> None:
    x = torch.full((N // 16, 16), 0.5, dtype=torch.float64)
    noise = corrupt_batch(x, strength=0.1, generator=gen(3)) - x  # 5 sigma from 0 and 1: clipping negligible
    assert abs(float(noise.std()) - 0.1) < Z * 0.1 / math.sqrt(2 * N)


def test_dropout_zeroes_a_rate_fraction_and_keeps_the_mean() -> None:
    x = torch.ones(N, dtype=torch.float64)
    out = dropout(x, rate=0.3, generator=gen(4))
    zero = float((out == 0).double().mean())
    assert abs(zero - 0.3) < Z * math.sqrt(0.3 * 0.7 / N)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.7))
    assert abs(float(out.mean()) - 1.0) < Z * math.sqrt(0.3 / 0.7 / N)
    with pytest.raises(ConfigError, match=r"`rate` must be a number in \[0, 1\)"):
        dropout(x, rate=1.0)


def test_perturb_tensors_keeps_the_graph_to_the_originals() -> None:
    w = torch.randn(3, 4, requires_grad=True)
    noisy = perturb_tensors({"w": w}, scale=0.5, generator=gen(5))["w"]
    eps = torch.randn(3, 4, generator=gen(5)) * 0.5
    assert torch.allclose(noisy, w + eps)
    noisy.square().sum().backward()
    assert w.grad is not None and torch.allclose(w.grad, 2 * (w.detach() + eps))


# --- modules ------------------------------------------------------------------------------------------------

X = torch.rand(6, 12, generator=gen(9))


@pytest.mark.parametrize(
    "make",
    [
        lambda: InputNoise(0.3, seed=1),
        lambda: InputNoise(0.3, clip=(0.0, 1.0), seed=1),
        lambda: ActivationNoise(0.5, mode="additive", distribution="laplace", seed=1),
        lambda: ActivationNoise(0.5, mode="multiplicative", seed=1),
        lambda: NoiseDropout(0.5, seed=1),
    ],
    ids=["input", "input-clipped", "act-additive", "act-multiplicative", "dropout"],
)
def test_output_noise_modules_obey_modes_and_replay(make: object) -> None:
    module = make()  # type: ignore[operator]
    module.eval()
    assert torch.equal(module(X), X)
    with force_noise(module):
        assert not torch.equal(module(X), X)
    module.train()
    assert_no_input_mutation(module, X)
    assert_replayable(lambda: module(X), lambda: module.reseed(1))
    with force_noise(module, on=False):
        assert torch.equal(module(X), X)
    assert module(X.double()).dtype == torch.float64


def test_input_noise_clip_keeps_the_range() -> None:
    out = InputNoise(2.0, clip=(0.0, 1.0), seed=0)(X)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ConfigError, match="`clip`"):
        InputNoise(0.1, clip=(1.0, 0.0))


@pytest.mark.parametrize("make", [small_mlp, small_cnn])
def test_attach_after_leaves_state_dict_and_eval_output_alone(make: object) -> None:
    plain = make()  # type: ignore[operator]
    model = clone(plain)
    ActivationNoise(0.5, seed=0).attach_after(model.act1, "activation_noise")
    NoiseDropout(0.5, seed=1).attach_after(model.act2, "dropout")
    assert list(model.state_dict()) == list(plain.state_dict())
    assert len(noise_modules(model)) == 2
    x = torch.rand(5, 2, 8, 8) if make is small_cnn else X
    assert_eval_is_plain(model, plain, x)
    model.train()
    assert not torch.equal(model(x), plain(x))
    with pytest.raises(ConfigError, match="`name`"):
        NoiseDropout(0.1).attach_after(model.act1, "activation_noise")


def test_attached_hooks_follow_deepcopy_and_pickle() -> None:
    model = small_mlp()
    NoiseDropout(0.5, seed=0).attach_after(model.act1, "dropout")
    WeightNoise(["weight"], 0.1, seed=0).attach(model.fc2)
    model.train()
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        twin.eval()  # the original stays in train mode: a hook still bound to it would add noise here
        assert torch.equal(twin(X), twin(X))
        with force_noise(twin):
            assert not torch.equal(twin(X), twin(X))


# --- weight noise -------------------------------------------------------------------------------------------


def state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def seen_weights(layer: nn.Module) -> list[torch.Tensor]:
    """Records the ``weight`` the layer's forward pass reads (registered after WeightNoise's own pre-hook)."""
    seen: list[torch.Tensor] = []
    layer.register_forward_pre_hook(lambda m, args: seen.append(m.weight.detach().clone()))
    return seen


def test_weight_noise_state_dict_byte_identical_and_fresh_weights_each_pass() -> None:
    model = small_mlp()
    keys = list(model.state_dict())
    noise = WeightNoise(["weight", "bias"], 0.05, seed=3)
    noise.attach(model.fc1)
    seen = seen_weights(model.fc1)
    before = state_bytes(model)
    stored = model.fc1.weight.detach().clone()
    model.train()
    model(X).sum().backward()
    model(X)
    assert state_bytes(model) == before
    assert list(model.state_dict()) == keys
    assert isinstance(model.fc1.weight, nn.Parameter) and "weight" not in model.fc1.__dict__
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])
    assert not torch.equal(seen[0], stored)
    assert torch.allclose(seen[1], stored + noise.last_noise["weight"])
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in small_mlp().named_parameters()]


def test_weight_noise_gradient_is_taken_at_the_perturbed_weights() -> None:
    layer = nn.Linear(4, 3, bias=False)
    noise = WeightNoise(["weight"], 0.2, seed=0)
    noise.attach(layer)
    x = torch.randn(5, 4, generator=gen(6))
    (0.5 * layer(x).square().sum()).backward()  # dL/dW = (W' x)^T x at the weights W' used
    w_used = layer.weight.detach() + noise.last_noise["weight"]
    assert layer.weight.grad is not None
    assert torch.allclose(layer.weight.grad, (x @ w_used.t()).t() @ x, atol=1e-5)
    expected_at_stored = (x @ layer.weight.detach().t()).t() @ x
    assert not torch.allclose(layer.weight.grad, expected_at_stored, atol=1e-3)


def test_weight_noise_modes_and_cleanup_on_error() -> None:
    layer = nn.Linear(4, 3)
    WeightNoise(["weight"], 0.2, seed=0).attach(layer)
    x = torch.randn(2, 4)
    layer.eval()
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    with force_noise(layer):
        assert not torch.equal(layer(x), layer(x))
    layer.train()
    with pytest.raises(RuntimeError):
        layer(torch.randn(2, 5))  # wrong width: the forward raises, the shadow must still be removed
    assert "weight" not in layer.__dict__


def test_weight_noise_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="`names`"):
        WeightNoise(["kernel"], 0.1).attach(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="`names`"):
        WeightNoise([], 0.1)
    with pytest.raises(ConfigError, match="`scale`"):
        WeightNoise(["weight"], -0.1)
