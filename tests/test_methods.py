"""Every registered method: trains, changes the loss, obeys noise modes; plus each method's own contract."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from helpers import NestedNet, small_cnn
from ninr.cli import build_parser, main
from ninr.cli.train import config_from_args
from ninr.data import load_dataset
from ninr.errors import ConfigError, UnknownNameError
from ninr.functional.noise import sample
from ninr.functional.perturb import add_gradient_noise, gradient_noise_std
from ninr.methods import METHODS, GradientNoise, Method, SetupContext, StepContext, build, check_compatible, get
from ninr.methods.baselines import l2_weights
from ninr.methods.placement import hidden_activations
from ninr.models.layers import channel_stats
from ninr.nn import force_noise, niws, noise_modules
from ninr.train import Callback, FitState, MethodSpec, TrainConfig, build_setup, evaluate, load_run, resolve, train

DATA = load_dataset("synthetic", n_train=96, n_test=32, seed=1)
WITH_MODEL_NOISE = {"in-ninr", "full-ninr", "dropout", "activation-noise", "weight-noise"}
TRAINING_ONLY = {"cdt", "input-noise", "gradient-noise"}  # batch / gradient transforms: nothing in the model


def config(*names: str, seed: int = 0, **params: Any) -> TrainConfig:
    specs = tuple(MethodSpec(n, params.get(n, {})) for n in names if n != "none")
    return TrainConfig(dataset="synthetic", methods=specs, epochs=1, max_steps=3, batch_size=32, seed=seed)


def setup(*names: str, seed: int = 0) -> nn.Module:
    cfg = config(*names, seed=seed)
    _, methods = resolve(cfg)
    model, _ = build_setup(cfg, DATA.input_shape, DATA.num_classes, methods, channel_stats(DATA.x_train))
    return model


class LossProbe(Callback):
    """Eval-mode training loss before the first and after the last step (no draws from the run's streams)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def _measure(self, state: FitState) -> None:
        was = state.model.training
        state.model.eval()
        self.losses.append(evaluate(state.model, DATA.x_train, DATA.y_train)[0])
        state.model.train(was)

    def on_train_start(self, state: FitState) -> None:
        self._measure(state)

    def on_train_end(self, state: FitState) -> None:
        self._measure(state)


@pytest.fixture(scope="module")
def plain_run() -> dict[str, torch.Tensor]:
    return train(config("none"), data=DATA).model.state_dict()


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_the_mlp_and_changes_the_loss(name: str, plain_run: dict[str, torch.Tensor]) -> None:
    probe = LossProbe()
    result = train(config(name), data=DATA, callbacks=[probe])
    assert result.status == "completed" and result.final["step"] == 3
    before, after = probe.losses
    assert math.isfinite(after) and after != before
    assert math.isfinite(result.final["train_loss"])
    if name != "none":  # the method changed the trajectory of plain SGD from the same initialisation
        state = result.model.state_dict()
        assert any(not torch.equal(state[k], v) for k, v in plain_run.items())
    assert result.config["methods"] == ([] if name == "none" else [{"name": name, "params": build(name).params()}])


@pytest.mark.parametrize("name", METHODS.names())
def test_eval_is_deterministic_and_the_plain_model_and_force_noise_makes_it_stochastic(name: str) -> None:
    model, plain = setup(name), setup("none")
    x = DATA.x_test[:8]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        assert torch.equal(model(x), plain.eval()(x))
        if name in TRAINING_ONLY or name in ("none", "l2"):
            assert noise_modules(model) == []  # documented: their noise never lives in the model
        if noise_modules(model):
            with force_noise(model):
                assert not torch.equal(model(x), model(x))
            assert torch.equal(model(x), model(x))  # mode restored after the block
    if name in WITH_MODEL_NOISE:
        assert noise_modules(model)


def test_registry_has_every_method_of_the_issue() -> None:
    expected = {"none", "l2", "dropout", "in-ninr", "full-ninr", "cdt", "input-noise"}
    expected |= {"activation-noise", "weight-noise", "gradient-noise"}
    assert expected <= set(METHODS.names())


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("l2", {"coefficient": -1e-4}, "`coefficient` must be a finite number >= 0"),
        ("dropout", {"rate": 1.0}, r"`rate` must be a number in \[0, 1\)"),
        ("dropout", {"rate": -0.1}, "`rate`"),
        ("dropout", {"rate": math.nan}, "`rate`"),
        ("cdt", {"strength": math.nan}, "`strength`"),
        ("cdt", {"fraction": 1.5}, r"`fraction` must be a number in \[0, 1\]"),
        ("input-noise", {"scale": -0.1}, "`scale` must be a finite number >= 0, got -0.1"),
        ("input-noise", {"distribution": "gausian"}, "did you mean 'gaussian'"),
        ("input-noise", {"schedule": "cosin"}, "did you mean 'cosine'"),
        ("input-noise", {"schedule": "linear"}, "`decay_steps`"),
        ("activation-noise", {"scale": math.inf}, "`scale`"),
        ("activation-noise", {"mode": "multiplicativ"}, "did you mean 'multiplicative'"),
        ("activation-noise", {"where": 3}, "`where`"),
        ("weight-noise", {"scale": -0.01}, "`scale`"),
        ("gradient-noise", {"eta": -1.0}, "`eta`"),
        ("gradient-noise", {"gamma": math.nan}, "`gamma`"),
        ("in-ninr", {"sigma": -1.0}, "`sigma`"),
        ("l2", {"coef": 1.0}, "has no parameter 'coef'"),
    ],
)
def test_out_of_range_parameters_are_rejected_at_construction(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(name, params)


def test_unknown_method_name_gets_did_you_mean() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'weight-noise'"):
        get("wieght-noise")


# --- composition and the CLI --------------------------------------------------------------------------------


def test_methods_compose_and_the_config_records_each_with_resolved_params() -> None:
    cfg = config("l2", "in-ninr", "dropout", "activation-noise", "gradient-noise")
    cfg = cfg.replace(methods=(MethodSpec("l2", {"coefficient": 0.01}), *cfg.methods[1:]))
    result = train(cfg, data=DATA)
    assert result.status == "completed"
    recorded = {m["name"]: m["params"] for m in result.config["methods"]}
    assert recorded["l2"] == {"coefficient": 0.01}
    assert recorded["in-ninr"]["sigma"] == 1.0 and recorded["gradient-noise"] == {"eta": 0.01, "gamma": 0.55}
    assert result.setup["dropout_after"] == result.setup["activation_noise_after"] == ["act1", "act2", "act3"]
    assert list(niws(result.model)) == ["fc1"]


def test_runs_with_model_noise_reload_from_their_checkpoint(tmp_path: Any) -> None:
    cfg = config("dropout", "weight-noise", "activation-noise")
    result = train(cfg, data=DATA, out_dir=tmp_path / "run")
    model, _ = load_run(tmp_path / "run")  # rebuilds the hooks, then loads the unchanged state_dict keys
    result.model.eval()
    x = DATA.x_test[:8]
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))
        with force_noise(model), force_noise(result.model):
            assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("pair", [("in-ninr", "full-ninr"), ("full-ninr", "in-ninr")])
def test_nonsensical_combinations_are_config_errors(pair: tuple[str, str]) -> None:
    with pytest.raises(ConfigError, match="cannot be combined"):
        check_compatible([build(n) for n in pair])
    with pytest.raises(ConfigError, match="cannot be combined"):
        resolve(config(*pair))


@pytest.mark.parametrize("name", METHODS.names())
def test_cli_builds_every_method(name: str) -> None:
    args = build_parser()[0].parse_args(["train", "--dataset", "synthetic", "--method", name])
    resolved, _ = resolve(config_from_args(args))
    assert [m["name"] for m in resolved["methods"]] == ([] if name == "none" else [name])


def test_cli_composes_methods_and_routes_params(tmp_path: Any) -> None:
    argv = ["train", "--dataset", "synthetic", "--method", "l2", "--method", "input-noise", "--quiet"]
    argv += ["--param", "coefficient=0.001", "--param", "schedule=cosine", "--param", "decay_steps=10"]
    argv += ["--max-steps", "2", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 0  # refusals (two NINR methods, a bad hyperparameter): tests/test_bad_inputs.py


# --- each method's own contract -----------------------------------------------------------------------------


def ctx(step: int = 0, seed: int = 0) -> StepContext:
    return StepContext(step, 0, torch.Generator().manual_seed(seed))


def test_l2_penalty_closed_form_excludes_biases_and_niws() -> None:
    model = setup("in-ninr")
    method = build("l2", {"coefficient": 0.01})
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    expected = 0.01 * sum(float(w.detach().double().square().sum()) for w in weights)
    penalty = method.value(model)
    assert float(penalty.detach()) == pytest.approx(expected, rel=1e-5)
    assert {id(w) for w in l2_weights(model)} == {id(w) for w in weights}
    penalty.backward()  # the oracle: autograd's gradient of the penalty, 2 c w
    autograd = {name: p.grad for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = model(torch.rand(4, 1, 28, 28)).square().sum()
    loss.backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    method.add_penalty_grad(model)
    for name, p in model.named_parameters():
        if autograd[name] is None:  # biases and NIWs: no penalty, gradient untouched
            assert torch.equal(p.grad, plain[name]), name
        else:
            # The loss gradient plus the penalty's: the same two roundings autograd makes when the penalty is part
            # of the loss (round(2 c w), then round(g + that)), so the same floats on any machine.
            assert torch.equal(p.grad, plain[name] + autograd[name]), name
    assert torch.allclose(weights[0].grad - plain["fc1.weight"], 0.02 * weights[0].detach())
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    build("l2", {"coefficient": 0.0}).add_penalty_grad(model)
    assert all(torch.equal(p.grad, before[name]) for name, p in model.named_parameters())


@pytest.mark.parametrize(
    ("make", "x", "expected"),
    [
        ("mlp", None, ["act1", "act2", "act3"]),
        (small_cnn, torch.rand(2, 2, 8, 8), ["act1", "act2"]),
        (NestedNet, torch.rand(2, 1, 4, 4), ["body.1"]),  # torch.relu is functional: only the Tanh is a module
        (
            lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid()),
            torch.rand(2, 4),
            ["1"],  # the final Sigmoid is an output activation, not a hidden one
        ),
    ],
)
def test_dropout_goes_after_each_hidden_activation_of_any_model(make: Any, x: Any, expected: list[str]) -> None:
    model = setup("none") if make == "mlp" else make()
    x = DATA.x_test[:2] if x is None else x
    assert hidden_activations(model, x) == expected
    keys = list(model.state_dict())
    facts = build("dropout", {"rate": 0.5}).configure_model(model, SetupContext(0, x))
    assert facts == {"dropout_after": expected}
    assert list(model.state_dict()) == keys
    assert len(noise_modules(model)) == len(expected)


def test_cdt_corrupts_a_fraction_with_clipping_from_the_method_stream() -> None:
    x, y = torch.full((20, 1, 4, 4), 0.5), torch.arange(20)
    method = build("cdt", {"strength": 0.4, "fraction": 0.5})
    out, out_y = method.transform_batch(x, y, ctx(seed=1))
    assert out_y is y
    assert int((out != x).flatten(1).any(dim=1).sum()) == 10
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    again, _ = method.transform_batch(x, y, ctx(seed=1))
    assert torch.equal(out, again)


def test_input_noise_follows_its_schedule() -> None:
    x, y = torch.zeros(200_000), torch.zeros(1)
    method = build("input-noise", {"scale": 0.2, "schedule": "linear", "decay_steps": 100, "final": 0.0})
    for step, std in [(0, 0.2), (50, 0.1), (100, 0.0)]:
        out, _ = method.transform_batch(x, y, ctx(step))
        assert abs(float(out.std()) - std) < 5 * std / math.sqrt(2 * len(x)) + 1e-12


# --- gradient noise -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1000])
def test_gradient_noise_variance_is_eta_over_1_plus_t_to_the_gamma(step: int) -> None:
    eta, gamma, n = 0.3, 0.55, 1_000_000
    p = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    p.grad = torch.zeros_like(p)
    std = add_gradient_noise([p], step, eta, gamma, generator=torch.Generator().manual_seed(step))
    expected = eta / (1 + step) ** gamma
    assert std**2 == pytest.approx(expected)
    # Sample variance of N Gaussians: relative standard error sqrt(2 / N) = 0.14%; allow 1% (7 standard errors).
    assert float(p.grad.var()) == pytest.approx(expected, rel=0.01)
    assert abs(float(p.grad.mean())) < 5 * math.sqrt(expected / n)


def test_gradient_noise_hook_matches_a_replayed_draw_with_any_optimizer() -> None:
    for make_opt in (lambda ps: torch.optim.SGD(ps, lr=1.0), lambda ps: torch.optim.Adam(ps, lr=0.1)):
        w = nn.Parameter(torch.zeros(50))
        opt = make_opt([w])
        g = torch.Generator().manual_seed(0)
        noise = GradientNoise(eta=0.5, generator=g)
        noise.attach(opt)
        replay = torch.Generator().manual_seed(0)
        for t in range(3):
            opt.zero_grad()
            (w * 0).sum().backward()  # zero gradient: what the optimizer sees is the noise alone
            opt.step()
            expected = sample("gaussian", (50,), scale=gradient_noise_std(t, 0.5), generator=replay)
            if isinstance(opt, torch.optim.SGD):
                assert torch.allclose(w.grad, expected)  # type: ignore[arg-type]
        assert noise.step == 3


def test_gradient_noise_composes_with_clipping_and_lr_schedulers() -> None:
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    noise = GradientNoise(eta=1.0, generator=torch.Generator().manual_seed(1))
    handle = noise.attach(opt)
    x = torch.randn(8, 5)
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()" if the hook broke it
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
            opt.step()
            sched.step()
    assert noise.step == 3 and opt.param_groups[0]["lr"] == pytest.approx(0.1 / 8)
    # The noise is added after clipping (inside step()): clipped gradients alone move the weights by at most
    # (0.1 + 0.05 + 0.025) * 1e-3; the noise (std 1 at t = 0, 6 weights) moves them by about 0.1 * sqrt(6).
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - start
    assert float(moved.norm()) > 0.05
    handle.remove()
    state = noise.state_dict()
    other = GradientNoise(eta=1.0, generator=torch.Generator())
    other.load_state_dict(state)
    assert other.step == 3 and torch.equal(other.generator.get_state(), noise.generator.get_state())  # type: ignore[union-attr]


def test_gradient_noise_method_reaches_every_parameter_with_the_right_std() -> None:
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 2))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    build("gradient-noise", {"eta": 0.04}).on_grad_computed(model, ctx(step=9))
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])  # type: ignore[union-attr]
    expected = math.sqrt(0.04 / 10**0.55)
    assert all(torch.count_nonzero(p.grad) == p.numel() for p in model.parameters())
    assert float(grads.std()) == pytest.approx(expected, rel=5 * math.sqrt(1 / (2 * grads.numel())))


def test_method_base_hooks_are_no_ops() -> None:
    m = Method()
    x, y = torch.ones(2), torch.ones(2)
    assert m.transform_batch(x, y, ctx()) == (x, y) and m.penalty(nn.Linear(1, 1)) is None
