"""Every registered component against the contracts of its kind, parametrized over the registries.

Each group reads ``REGISTRY.names()``, so a distribution, corruption, attack, model or method is checked
the moment it is registered. The checks are the ones every member of the kind promises (in its
registry's docstring or docs/); what is specific to one component (reference values, closed forms)
stays in that component's test file. The harnesses are in tests/helpers.py.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import ninr.hep  # noqa: F401  (registers its distributions: the parametrized lists must not depend on test order)
from helpers import (
    NestedNet,
    assert_eval_is_plain,
    assert_global_rng_untouched,
    assert_grads_reach,
    assert_model_left_alone,
    assert_moments,
    assert_no_input_mutation,
    assert_replayable,
    assert_reproducible,
    assert_state_dict_roundtrip,
    clone,
    garment_images,
    module_modes,
    seeded,
    small_cnn,
    small_mlp,
)
from ninr.errors import ConfigError
from ninr.functional.noise import DISTRIBUTIONS, sample
from ninr.methods import METHODS, SetupContext, StepContext, build
from ninr.models import MODELS, build_model
from ninr.nn import attach_nins, force_noise, niws, noise_modules
from ninr.robustness import CORRUPTIONS, TABLES, corrupt, get_corruption
from ninr.robustness.attacks import ATTACKS, NORMS
from ninr.robustness.severities import IMAGENET_C, MNIST_C, SEVERITIES

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- distributions
# ``sampler(shape, *, scale, generator, device, dtype)``: mean-zero noise of standard deviation ``scale``;
# exact zeros at scale 0 without touching the generator (ninr.functional.noise).

DIST_NAMES = DISTRIBUTIONS.names()
N_DRAWS = 1_000_000  # moment checks: the standard errors are scale / 1000 and below (see assert_moments)
SCALE = 0.7


def draw(name: str, shape: tuple[int, ...], *, scale: float = SCALE, **kwargs: Any) -> torch.Tensor:
    return sample(name, shape, scale=scale, **kwargs)  # the registered sampler, behind the public entry point


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", DIST_NAMES)
def test_distribution_draws_the_shape_dtype_and_device_asked(name: str, dtype: torch.dtype) -> None:
    for shape in [(2, 3, 4), (), (0, 5)]:
        out = draw(name, shape, generator=gen(), dtype=dtype, device="cpu")
        assert out.shape == shape and out.dtype == dtype and out.device.type == "cpu"
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", DIST_NAMES)
def test_distribution_scale_zero_is_exact_zeros_and_leaves_the_generator_alone(name: str, dtype: torch.dtype) -> None:
    g = gen(3)
    state = g.get_state()
    out = draw(name, (4, 5), scale=0.0, generator=g, dtype=dtype)
    assert out.shape == (4, 5) and out.dtype == dtype
    assert torch.count_nonzero(out) == 0
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("name", DIST_NAMES)
def test_distribution_replays_from_the_generator_state_and_leaves_the_global_rng_alone(name: str) -> None:
    g = gen(11)
    state = g.get_state()
    assert_replayable(lambda: draw(name, (1000,), generator=g), lambda: g.set_state(state))
    assert_global_rng_untouched(lambda: draw(name, (1000,), generator=g))


@pytest.mark.parametrize("name", DIST_NAMES)
def test_distribution_has_mean_zero_and_std_scale(name: str) -> None:
    x = draw(name, (N_DRAWS,), generator=gen(0), dtype=torch.float64)
    assert_moments(x, mean=0.0, std=SCALE)


# ----------------------------------------------------------------------------- corruptions
# ``corrupt(x, name, severity, generator=)``: a new (N, C, H, W) tensor in [0, 1] with x's shape, dtype and
# device; x untouched; deterministic given the generator (one key per example, in order); a batch equals
# its examples one by one (corruptions/base.py); the distance from the clean image grows with severity
# (docs/robustness.md).

CORRUPTION_NAMES = CORRUPTIONS.names()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return garment_images(16)


@pytest.fixture(scope="module")
def rgb() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=gen(7), dtype=torch.float64)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_table_is_cited(name: str) -> None:
    table = TABLES[name]
    assert len(table.values) == len(SEVERITIES) and table.parameter
    assert any(src in table.source for src in (MNIST_C, IMAGENET_C)) or table.source.startswith("ninr")


def assert_corrupted_like(out: torch.Tensor, x: torch.Tensor) -> None:
    """``out`` is a batch of images like ``x``: same shape, dtype and device, finite, in [0, 1]."""
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()
    if out.numel():
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_keeps_shape_dtype_device_and_the_unit_range(
    name: str, images: torch.Tensor, rgb: torch.Tensor
) -> None:
    assert_no_input_mutation(lambda t: corrupt(t, name, 3, generator=gen()), images[:4].clone())
    for x in (images[:4], rgb):
        for severity in (1, 5):
            assert_corrupted_like(corrupt(x, name, severity, generator=gen()), x)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_takes_any_floating_dtype_size_and_channel_count(name: str, images: torch.Tensor) -> None:
    # docs/robustness.md: "any floating dtype and device, any channel count ... and any size".
    inputs = [
        images[:3].half(),
        images[:3].bfloat16(),
        torch.rand(2, 2, 9, 13, generator=gen(8)),  # two channels, odd and non-square
        images[:0],  # an empty batch
    ]
    for x in inputs:
        for severity in (1, 5):
            assert_corrupted_like(corrupt(x, name, severity, generator=gen()), x)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_distance_grows_with_severity(name: str, images: torch.Tensor) -> None:
    dist = [float((corrupt(images, name, s, generator=gen()) - images).abs().mean()) for s in SEVERITIES]
    assert dist[0] > 0
    assert all(b > a for a, b in itertools.pairwise(dist)), dist


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_draws_only_from_its_generator(name: str, images: torch.Tensor) -> None:
    assert_reproducible(lambda: corrupt(images, name, 4, generator=gen(5)))
    assert_global_rng_untouched(lambda: corrupt(images, name, 4, generator=gen(5)))
    g = gen(5)
    state = g.get_state()
    first = corrupt(images, name, 4, generator=g)
    if get_corruption(name).random:
        assert not torch.equal(first, corrupt(images, name, 4, generator=gen(6)))
        assert not torch.equal(g.get_state(), state), "a random corruption must draw from the generator"
    else:
        assert torch.equal(first, corrupt(images, name, 4, generator=gen(6)))
        assert torch.equal(g.get_state(), state), "a deterministic corruption must not consume the generator"


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruption_of_a_batch_equals_its_examples_one_by_one(name: str, images: torch.Tensor) -> None:
    # Each example gets the same random numbers either way (counter-based, keyed per example); only the
    # summation order a kernel picks for another batch size may differ. Reordering a float64 sum of n terms
    # of size <= 1 moves it by at most 2 n u: the longest sums here are per-image means over 28 x 28 pixels
    # (contrast), 2 x 784 x 2^-53 ~ 2e-13, and a blur chains at most four passes of <= 32 terms: atol 1e-12.
    # In float64 a thresholded map (spatter's mud, canny's edges) flips only for a value within ~1e-13 of
    # its threshold, which float32 rounding (1e-7) would not keep clear of.
    x = images[:6].double()
    batch = corrupt(x, name, 3, generator=gen(9))
    g = gen(9)
    single = torch.cat([corrupt(x[i : i + 1], name, 3, generator=g) for i in range(len(x))])
    torch.testing.assert_close(batch, single, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- attacks
# ``attack(model, x, y, epsilons, *, norm=, ...)`` -> (E, N, C, H, W): in [0, 1] and in each epsilon's ball,
# epsilon 0 returns x exactly, x untouched, the model run in eval mode with every submodule's mode, every
# parameter and every parameter gradient restored (ninr.robustness.attacks, docs/robustness.md).

EPSILONS = [0.0, 0.02, 0.05, 0.1]


def _accepts(fn: Callable[..., Any], parameter: str) -> bool:
    return parameter in inspect.signature(fn).parameters


ATTACK_CASES = [
    (name, norm) for name in ATTACKS.names() for norm in (NORMS if _accepts(ATTACKS.get(name), "norm") else (None,))
]


def attack_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny CNN and 6 images in [0.2, 0.8], far enough from 0 and 1 that clipping never eats a budget."""
    model = small_cnn(channels=1, size=8, out=3).eval()
    x = 0.2 + 0.6 * torch.rand(6, 1, 8, 8, generator=gen(1))
    y = torch.randint(0, 3, (6,), generator=gen(2))
    return model, x, y


def run_attack(name: str, norm: str | None, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    fn = ATTACKS.get(name)
    options: dict[str, Any] = {} if norm is None else {"norm": norm}
    if _accepts(fn, "generator"):
        options["generator"] = gen(4)
    # the contracts (ball, range, modes, no mutation) hold from the first iteration: small budgets keep them fast
    if _accepts(fn, "queries"):
        options["queries"] = 20
    if _accepts(fn, "steps"):
        options["steps"] = 5
    return fn(model, x, y, EPSILONS, **options)


@pytest.mark.parametrize(("name", "norm"), ATTACK_CASES)
def test_attack_stays_in_the_ball_and_the_unit_range(name: str, norm: str | None) -> None:
    model, x, y = attack_problem()
    adv = run_attack(name, norm, model, x, y)
    assert adv.shape == (len(EPSILONS), *x.shape) and adv.dtype == x.dtype
    assert torch.equal(adv[0], x), "epsilon 0 must return the input"
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    for i, eps in enumerate(EPSILONS):
        delta = (adv[i] - x).flatten(1)
        size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
        # float32: recomputing (x + delta) - x errs by at most an ulp below 1 (6e-8) per pixel, 8 x 6e-8 = 5e-7
        # in the L2 norm of 64 pixels; the L2 projection's scaling errs by about n u = 64 x 6e-8 = 4e-6
        # relative. 1e-5 relative plus 1e-6 absolute bounds both.
        assert float(size.max()) <= eps * (1 + 1e-5) + 1e-6
        if eps > 0:  # the tiny model's input gradient is nonzero: a gradient attack moves the input
            assert float(size.max()) > 0.5 * eps, "the attack left its budget unused"
    assert_no_input_mutation(lambda t: run_attack(name, norm, model, t, y), x)


@pytest.mark.parametrize(("name", "norm"), ATTACK_CASES)
def test_attack_runs_in_eval_mode_and_leaves_the_model_alone(name: str, norm: str | None) -> None:
    model, x, y = attack_problem()
    model.train()
    model.conv2.eval()  # a mixed state must come back as it was
    model.out.weight.grad = torch.ones_like(model.out.weight)  # an existing gradient must stay as it is
    seen: list[list[bool]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(module_modes(m)))
    assert_model_left_alone(model, lambda: run_attack(name, norm, model, x, y))
    assert seen and not any(any(modes) for modes in seen), "the attack ran the model in train mode"


@pytest.mark.parametrize(("name", "norm"), ATTACK_CASES)
def test_attack_draws_only_from_its_generator(name: str, norm: str | None) -> None:
    model, x, y = attack_problem()
    assert_reproducible(lambda: run_attack(name, norm, model, x, y))
    assert_global_rng_untouched(lambda: run_attack(name, norm, model, x, y))


# ----------------------------------------------------------------------------- models
# ``builder(input_shape, num_classes, **kwargs)`` for (C, H, W) inputs -> logits (B, num_classes); every
# builder accepts ``input_stats=(mean, std)`` and standardises its input (ninr.models.registry). Any model
# of Linear/Conv2d layers takes noise injection nodes (ninr.nn.attach_nins).

SMALL = {"mlp": {"width": 16, "depth": 2}, "cnn": {"channels": (4, 8), "hidden": 16}, "resnet18": {"width": 4}}
"""Narrow variants so each check runs in milliseconds; a model missing here is built with its defaults."""

INPUT_SHAPES = [(1, 28, 28), (2, 32, 32)]  # Fashion-MNIST; the calorimeter images (EM and HAD channels)
CLASSES = 3
MODEL_NAMES = MODELS.names()


def make_model(name: str, shape: tuple[int, int, int], seed: int = 0, **kwargs: Any) -> nn.Module:
    with seeded(seed):
        return build_model(name, shape, CLASSES, **{**SMALL.get(name, {}), **kwargs})


def model_input(shape: tuple[int, int, int], n: int = 4) -> torch.Tensor:
    return torch.rand(n, *shape, generator=gen(5))


@pytest.mark.parametrize("shape", INPUT_SHAPES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_gives_logits_per_example_and_gradients_to_every_parameter(
    name: str, shape: tuple[int, int, int]
) -> None:
    model = make_model(name, shape).train()
    x = model_input(shape)
    out = model(x)
    assert out.shape == (len(x), CLASSES) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    assert_grads_reach(dict(model.named_parameters()))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_init_is_deterministic_under_a_seed(name: str) -> None:
    a, b, c = (make_model(name, INPUT_SHAPES[0], seed) for seed in (0, 0, 1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa), "the seed does not reach the initialisation"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_state_dict_round_trip(name: str) -> None:
    shape = INPUT_SHAPES[0]
    x = model_input(shape)
    model = make_model(name, shape, 0)
    with torch.no_grad():
        model.train()(x)  # moves any running statistics away from their initial values
    assert_state_dict_roundtrip(model, make_model(name, shape, 1), x)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_input_stats_standardise_the_input(name: str) -> None:
    shape = INPUT_SHAPES[1]
    mean, std = (0.5, -1.0), (2.0, 0.25)
    standardising = make_model(name, shape, input_stats=(mean, std)).eval()
    plain = make_model(name, shape).eval()
    plain.load_state_dict(dict(standardising.named_parameters()), strict=False)  # the same weights
    x = model_input(shape)
    m, s = torch.tensor(mean).view(1, 2, 1, 1), torch.tensor(std).view(1, 2, 1, 1)
    with torch.no_grad():
        # Both round (x - m) / s once in float32, in or outside the model, and then run the same layers; the
        # outputs agree to a few float32 ulps, well inside assert_close's float32 defaults (rtol 1.3e-6, atol 1e-5).
        torch.testing.assert_close(standardising(x), plain((x - m) / s))


@pytest.mark.parametrize("shape", INPUT_SHAPES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_takes_a_node_on_every_layer(name: str, shape: tuple[int, int, int]) -> None:
    plain = make_model(name, shape)
    model = clone(plain)
    x = model_input(shape)
    report = attach_nins(model, "all", sigma=0.5, seed=0, example_input=x[:1])
    assert len(report.nodes) == sum(isinstance(m, nn.Linear | nn.Conv2d) for m in plain.modules())
    assert_eval_is_plain(model, plain, x)
    with torch.no_grad(), force_noise(model):
        assert not torch.equal(model(x), plain(x))
    model.train()
    model(x).logsumexp(dim=1).sum().backward()
    assert_grads_reach(niws(model))


# ----------------------------------------------------------------------------- methods
# A method is a frozen dataclass of validated parameters built by ``build(name, params)``; an unknown
# parameter is a ConfigError naming it (ninr.methods.base). In eval mode every method's model computes
# exactly what the plain model computes, and model noise is drawn from streams seeded by the run's seed,
# not from the global generator (docs/methods.md). Step hooks draw from ``StepContext.generator``.

METHOD_NAMES = METHODS.names()

TINY_MODELS: dict[str, tuple[Callable[[], nn.Module], torch.Tensor]] = {
    "mlp": (small_mlp, torch.rand(4, 12, generator=gen(1))),
    "cnn": (small_cnn, torch.rand(4, 2, 8, 8, generator=gen(2))),
    "nested": (NestedNet, torch.rand(4, 1, 4, 4, generator=gen(3))),
}


def step_ctx(seed: int = 0, step: int = 0) -> StepContext:
    return StepContext(step, 0, gen(seed))


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_builds_with_defaults_and_its_params_round_trip(name: str) -> None:
    method = build(name)
    assert isinstance(method, METHODS.get(name)) and method.name == name
    params = method.params()
    again = build(name, json.loads(json.dumps(params)))  # as a run's config.json stores and reloads it
    assert again == method and again.params() == params


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_names_an_unknown_parameter(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"method '{name}' has no parameter 'no_such_parameter'"):
        build(name, {"no_such_parameter": 1})


@pytest.mark.parametrize("model_name", list(TINY_MODELS))
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_configured_model_keeps_its_layers_and_is_the_plain_model_in_eval(name: str, model_name: str) -> None:
    make, x = TINY_MODELS[model_name]
    plain = make()
    method = build(name)

    def configured() -> nn.Module:
        model = clone(plain)
        method.configure_model(model, SetupContext(seed=0, example_input=x[:2]))
        return model

    model = configured()
    state, original = model.state_dict(), plain.state_dict()
    for key, value in original.items():
        assert key in state and torch.equal(state[key], value), f"{key}: the original layer's state changed"
    assert_eval_is_plain(model, plain, x)
    if noise_modules(model):
        with torch.no_grad(), force_noise(model):
            assert not torch.equal(model(x), plain(x))
    assert_global_rng_untouched(lambda: configured().train()(x))
    first, second = configured().train(), configured().train()
    assert torch.equal(first(x), second(x)), "the same setup seed gave different model noise"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_step_hooks_replay_from_the_step_generator(name: str) -> None:
    method = build(name)
    x, y = torch.rand(8, 1, 4, 4, generator=gen(1)), torch.arange(8)
    assert_no_input_mutation(lambda t: method.transform_batch(t, y, step_ctx()), x)
    assert_reproducible(lambda: method.transform_batch(x, y, step_ctx(seed=3))[0])
    assert_global_rng_untouched(lambda: method.transform_batch(x, y, step_ctx(seed=3)))

    model = small_mlp()
    penalty = method.penalty(model)
    assert penalty is None or (penalty.dim() == 0 and torch.isfinite(penalty))

    def grads_after_hooks() -> torch.Tensor:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        method.add_penalty_grad(model)
        method.on_grad_computed(model, step_ctx(seed=4, step=2))
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    assert_reproducible(grads_after_hooks)
    assert_global_rng_untouched(grads_after_hooks)
