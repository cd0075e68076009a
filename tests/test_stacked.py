"""Stacked multi-run training: per run, the same records as training each config alone.

The oracle is :func:`ninr.train.train` itself. The data are continuous random images: with the
synthetic set's exact-zero pixels, max-pooling meets exact ties whose winner can differ between the
grouped and the plain convolution (their sums round differently in the last bit), which changes a
gradient discretely; that is float arithmetic, not the stacking, and ties are absent here.
"""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch
from torch import nn

import ninr.train.backends.stacked as stacked_backend
from ninr.data.base import Dataset
from ninr.dynamics.niw import NIWProbe
from ninr.errors import ConfigError, NinrError
from ninr.functional.nin import nin_additive, nin_conv2d_channel, nin_linear
from ninr.methods.baselines import Dropout
from ninr.train import Callback, FitState, MethodSpec, TrainConfig, load_run, train, train_many, train_stacked
from ninr.train.backends.stacked import StackedBackend
from ninr.train.backends.stacked_net import NotStackableError, StackedNet
from ninr.train.backends.stacked_ops import (
    stacked_conv2d,
    stacked_linear,
    stacked_nin_additive,
    stacked_nin_additive_conv,
    stacked_nin_channel,
)
from ninr.train.callbacks import StackProgress
from ninr.train.stacking import (
    composition_invariant,
    group_stackable,
    per_run_fields,
    solo_reason,
    stack_key,
)

RTOL, ATOL = 1e-4, 1e-6
"""Stacked and one-by-one runs compute the same float32 sums in other orders (bmm against addmm, a grouped against a
plain convolution, one layout against another), so each step's results differ by float32 rounding: a sum of n terms
moves by at most 2 n u times the sum of its terms' sizes (u = 2^-24), with n <= 256 here (a 16x16 image into the
first layer), and by about sqrt(n) u in practice, ~1e-6. Over these few (<= 30) steps of runs that do not sit at a
phase boundary the records and weights stay within a few times that: measured worst 1.1e-6 relative for records and
4.4e-7 for weights on AVX-512 and on AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2), so RTOL leaves a factor
of ~100. ATOL is the same relative bound for values near zero. An accuracy changes only where an example's two largest
logits lie within ~1e-6 of each other: accuracies are compared within one example (:func:`assert_same_records`)."""


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny steps: threads only add barrier waits


def random_data(n_train: int = 96, n_test: int = 48, size: int = 16, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(
        "random",
        torch.rand(n_train, 1, size, size, generator=g),
        torch.randint(0, 10, (n_train,), generator=g),
        torch.rand(n_test, 1, size, size, generator=g),
        torch.randint(0, 10, (n_test,), generator=g),
        tuple(str(i) for i in range(10)),
    )


DATA = random_data()
MIXED = [
    (),
    (MethodSpec("in-ninr", {"sigma": 0.5}),),
    (MethodSpec("full-ninr", {"sigma": 1.0, "distribution": "uniform"}),),
]


def cfg(model: str = "mlp", methods: tuple[MethodSpec, ...] = (), **changes: object) -> TrainConfig:
    kwargs = {"width": 32} if model == "mlp" else {"channels": (4, 8), "hidden": 16}
    base = TrainConfig(dataset="random", model=model, model_kwargs=kwargs, methods=methods, epochs=2, batch_size=16)
    return base.replace(**{"max_steps": 9, **changes})


def assert_same_records(alone: list[dict], stacked: list[dict], n_test: int = len(DATA.y_test)) -> None:
    """Equal records, floats within RTOL, accuracies within one example of the set they count (see RTOL)."""
    assert len(stacked) == len(alone)
    for a, s in zip(alone, stacked, strict=True):
        assert s.keys() == a.keys()
        for key in a:
            if key == "epoch_time_s":
                continue
            if key.endswith("_acc") and not math.isnan(a[key]):
                examples = a["examples"] if key == "train_acc" else n_test
                assert abs(s[key] - a[key]) <= 1 / examples + 1e-12, key
            elif isinstance(a[key], float):
                assert s[key] == pytest.approx(a[key], rel=RTOL, abs=ATOL, nan_ok=True), key
            else:
                assert s[key] == a[key], key


def assert_same_as_alone(configs: list[TrainConfig], results: list, data: Dataset = DATA) -> None:
    for config, result in zip(configs, results, strict=True):
        alone = train(config, data=data)
        assert result.run_id == alone.run_id
        assert result.status == alone.status
        assert_same_records(alone.records, result.records, len(data.y_test))
        for (name, p), q in zip(result.model.state_dict().items(), alone.model.state_dict().values(), strict=True):
            scale = max(float(q.abs().max()), 1.0)  # a diverged run's weights are huge: compare to their scale
            assert float((p - q).abs().max()) <= RTOL * scale, name


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_stack_equals_runs_one_by_one_with_and_without_nins(model: str) -> None:
    configs = [cfg(model, m, seed=i, lr=0.05 + 0.02 * i) for i, m in enumerate(MIXED)]
    results = train_stacked(configs, data=DATA)
    assert [r.setup["stacked"] for r in results] == [{"runs": 3, "index": i} for i in range(3)]
    assert "niw_norm/out" in results[2].final and "niw_norm/out" not in results[1].final
    assert_same_as_alone(configs, results)


@pytest.mark.parametrize("conv_mode,per", [("channel", "pixel"), ("additive", "example")])
def test_conv_noise_variants_stack(conv_mode: str, per: str) -> None:
    methods = (MethodSpec("full-ninr", {"sigma": 0.7, "conv_mode": conv_mode, "per": per}),)
    configs = [cfg("cnn", methods, seed=s, max_steps=4, epochs=1) for s in range(2)]
    assert_same_as_alone(configs, train_stacked(configs, data=DATA))


def test_per_run_lr_momentum_penalty_and_batch_transforms() -> None:
    methods = [
        (MethodSpec("l2", {"coefficient": 1e-2}), MethodSpec("in-ninr", {"sigma": 2.0})),
        (MethodSpec("cdt", {"strength": 0.3}),),
        (MethodSpec("input-noise", {"scale": 0.1}), MethodSpec("full-ninr", {"sigma": 0.3})),
    ]
    configs = [cfg("mlp", m, seed=i, lr=0.03 * (i + 1), momentum=0.5 * (i % 2)) for i, m in enumerate(methods)]
    assert len(group_stackable(configs)) == 1
    assert_same_as_alone(configs, train_stacked(configs, data=DATA))


def test_gradient_hooks_run_per_run_on_gradient_views() -> None:
    """Gradient noise (an ``on_grad_computed`` hook drawing from the run's own stream) and l2 (``add_penalty_grad``)
    act on each stacked run's own gradients, as they act on a lone run's."""
    methods = [
        (MethodSpec("gradient-noise", {"eta": 0.3}),),
        (),
        (MethodSpec("gradient-noise", {"eta": 0.01}), MethodSpec("l2", {"coefficient": 1e-2})),
    ]
    configs = [cfg("mlp", m, seed=i) for i, m in enumerate(methods)]
    assert len(group_stackable(configs)) == 1
    assert_same_as_alone(configs, train_stacked(configs, data=DATA))


def test_phase_calibrated_runs_stack_and_calibrate_as_they_do_alone() -> None:
    methods = [(MethodSpec("in-ninr", {"phase": "decay"}),), (MethodSpec("full-ninr", {"phase": "catapult"}),)]
    configs = [cfg("mlp", m, seed=i, max_steps=4, epochs=1) for i, m in enumerate(methods)]
    results = train_many(configs, data=DATA)
    assert [r.setup["stacked"] for r in results] == [{"runs": 2, "index": i} for i in range(2)]
    for config, result in zip(configs, results, strict=True):
        alone = train(config, data=DATA)
        assert result.setup["calibration"] == alone.setup["calibration"]  # one preparation path: the same call
    assert_same_as_alone(configs, results)


class HalveLrAtStep(Callback):
    """Changes the run's learning rate through its optimizer, as a schedule callback would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: FitState) -> None:
        if state.step == self.step:
            for group in state.optimizer.param_groups:
                group["lr"] /= 2


def test_a_stacked_runs_optimizer_is_a_real_view_of_its_hyperparameters() -> None:
    configs = [cfg("mlp", seed=s, lr=0.05 * (s + 1), momentum=0.5 * s) for s in range(2)]
    schedules = [[HalveLrAtStep(3)], []]
    results = train_stacked(configs, data=DATA, callbacks=schedules)
    for config, result, schedule in zip(configs, results, schedules, strict=True):
        alone = train(config, data=DATA, callbacks=[HalveLrAtStep(3)] if schedule else [])
        assert_same_records(alone.records, result.records)
    unscheduled = train(configs[0], data=DATA)
    assert results[0].final["train_loss"] != pytest.approx(unscheduled.final["train_loss"], rel=1e-6)
    opt = StackedBackend([results[0].model], lr=[0.1], momentum=[0.0]).optimizers[0]
    assert opt.param_groups[0]["lr"] == 0.1 and isinstance(opt, torch.optim.Optimizer)
    with pytest.raises(NinrError, match="stepped by its stack"):
        opt.step()


def test_which_fields_may_differ_inside_a_stack_is_declared_on_the_fields() -> None:
    assert per_run_fields() == ("methods", "lr", "momentum", "seed")
    a = cfg("mlp", seed=0)
    assert stack_key(a) == stack_key(a.replace(seed=3, lr=0.5, momentum=0.9, methods=(MethodSpec("l2"),)))
    for name, value in (("eval_batch_size", 7), ("max_steps", 2), ("batch_size", 8), ("precision", "bf16")):
        assert stack_key(a) != stack_key(a.replace(**{name: value})), name


def test_a_diverging_run_stops_alone_and_the_others_go_on() -> None:
    configs = [cfg("mlp", seed=i, lr=lr, max_steps=None, epochs=3) for i, lr in enumerate([0.05, 1e6, 0.1])]
    results = train_stacked(configs, data=DATA)
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert len(results[1].records) == 1 and math.isnan(results[1].final["test_loss"])
    assert_same_as_alone(configs, results)


def test_non_stackable_mix_falls_back_and_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Dropout, "stackable", False)  # a method that declares no stacked form
    configs = [
        cfg("mlp", (MethodSpec("dropout", {"rate": 0.2}),), seed=0),
        cfg("mlp", seed=1),
        cfg("mlp", seed=2, batch_size=32),
        cfg("mlp", seed=3),
    ]
    assert group_stackable(configs) == [[0], [1, 3], [2]]
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        results = train_many(configs, data=DATA)
    text = caplog.text
    assert "one by one" in text and "dropout" in text and "trained 2 runs as one stack" in text
    assert "stacked" not in results[0].setup and results[1].setup["stacked"]["runs"] == 2
    assert_same_as_alone(configs, results)


def test_models_that_do_not_stack_fall_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*args: object, **kwargs: object) -> StackedNet:
        raise NotStackableError("refused for the test")

    monkeypatch.setattr(stacked_backend, "StackedNet", refuse)
    configs = [cfg("mlp", seed=s, max_steps=3, epochs=1) for s in range(2)]
    with caplog.at_level(logging.WARNING, logger="ninr.train.stacking"):
        results = train_many(configs, data=DATA)
    assert "refused for the test" in caplog.text
    assert all("stacked" not in r.setup for r in results)
    assert_same_as_alone(configs, results)


def test_grouping_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    a = cfg("mlp", seed=0)
    configs = [a, a.replace(seed=1, lr=0.2), a.replace(model="cnn"), a.replace(epochs=3), a.replace(seed=2)]
    assert group_stackable(configs) == [[0, 1, 4], [2], [3]]
    assert group_stackable([a.replace(seed=s) for s in range(5)], max_stack=2) == [[0, 1], [2, 3], [4]]
    pixel = a.replace(methods=(MethodSpec("in-ninr", {"per": "pixel"}),))
    assert stack_key(pixel) != stack_key(a) == stack_key(a.replace(methods=(MethodSpec("full-ninr"),)))
    assert stack_key(a.replace(methods=(MethodSpec("dropout"),))) == stack_key(a)
    monkeypatch.setattr(Dropout, "stackable", False)
    assert stack_key(a.replace(methods=(MethodSpec("dropout"),))) is None
    with pytest.raises(ConfigError, match="stackable together"):
        train_stacked([a, a.replace(batch_size=8)], data=DATA)


def test_stacked_net_refuses_what_it_cannot_stack() -> None:
    with pytest.raises(NotStackableError, match=r"nn\.Sequential"):
        StackedNet([nn.Linear(3, 2)])
    hooked = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    hooked[1].register_forward_hook(lambda m, i, o: o)
    with pytest.raises(NotStackableError, match="hooks"):
        StackedNet([hooked])
    with pytest.raises(NotStackableError, match="differs"):
        StackedNet([nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))])


def test_run_directories_and_released_parameters(tmp_path: object) -> None:
    configs = [cfg("mlp", MIXED[1], seed=s, max_steps=4, epochs=1) for s in range(2)]
    outs = [tmp_path / f"run{s}" for s in range(2)]  # type: ignore[operator]
    results = train_many(configs, data=DATA, out_dirs=outs)
    p0, p1 = (next(r.model.parameters()) for r in results)
    assert p0.untyped_storage().data_ptr() != p1.untyped_storage().data_ptr()
    assert p0.untyped_storage().nbytes() == p0.numel() * p0.element_size()
    model, config = load_run(outs[1])
    assert (config.seed, config.methods[0].name) == (1, "in-ninr")
    for p, q in zip(model.state_dict().values(), results[1].model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q)


def test_bf16_stack_runs_and_stays_close_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NINR_ALLOW_EMULATED_BF16", "1")
    configs = [cfg("mlp", MIXED[1], seed=s, max_steps=6, epochs=1) for s in range(2)]
    fp32 = train_stacked(configs, data=DATA)
    bf16 = train_stacked([c.replace(precision="bf16") for c in configs], data=DATA)
    for a, b in zip(fp32, bf16, strict=True):
        assert b.status == "completed"
        # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3): autocast rounds each matmul's inputs to it and
        # accumulates in float32, so each of the three layers moves the logits by ~2^-8 relative and the loss by a
        # few times that, ~1e-2 at worst over six steps: rel 0.05 (measured: 1e-5 on AVX-512 with AVX512-BF16)
        assert b.final["train_loss"] == pytest.approx(a.final["train_loss"], rel=0.05)
        assert next(b.model.parameters()).dtype == torch.float32


# -- per-run callbacks ---------------------------------------------------------------------------------------


class Recorder(Callback):
    """Logs every hook with the state it sees (what a probe may read)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def _log(self, hook: str, state: FitState, record: dict | None = None) -> None:
        loss = None if state.loss is None else float(state.loss)
        epoch_of_record = None if record is None else record["epoch"]
        self.calls.append((hook, state.epoch, state.step, state.status, loss, epoch_of_record, len(state.records)))

    def on_train_start(self, state: FitState) -> None:
        self._log("start", state)

    def on_step_end(self, state: FitState) -> None:
        self._log("step", state)

    def on_epoch_end(self, state: FitState, record: dict) -> None:
        self._log("epoch", state, record)

    def on_train_end(self, state: FitState) -> None:
        self._log("end", state)


def _same_calls(stacked: list[tuple], alone: list[tuple]) -> None:
    assert [c[:4] + c[5:] for c in stacked] == [c[:4] + c[5:] for c in alone]
    for s_call, a_call in zip(stacked, alone, strict=True):
        want = a_call[4] if a_call[4] is None else pytest.approx(a_call[4], rel=RTOL, nan_ok=True)
        assert s_call[4] == want


def test_callbacks_see_each_stacked_run_as_a_lone_run_sees_itself() -> None:
    """Hooks, order, step, epoch, status and loss as in ``fit``: a run that diverges, runs stopped by max_steps."""
    configs = [cfg("mlp", MIXED[1], seed=0, max_steps=10, epochs=3), cfg("mlp", seed=1, lr=1e6, max_steps=10, epochs=3)]
    configs.append(cfg("mlp", seed=2, max_steps=10, epochs=3))
    recorders = [Recorder() for _ in configs]
    results = train_many(configs, data=DATA, callbacks=[[r] for r in recorders])
    assert [r.status for r in results] == ["stopped", "diverged", "stopped"]
    for config, recorder in zip(configs, recorders, strict=True):
        alone = Recorder()
        train(config, data=DATA, callbacks=[alone])
        _same_calls(recorder.calls, alone.calls)
    assert [c[0] for c in recorders[0].calls].count("step") == 10 and recorders[0].calls[-1][0] == "end"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_niw_probe_on_a_stacked_run_reads_what_it_reads_alone_and_changes_nothing(model: str) -> None:
    configs = [cfg(model, m, seed=i) for i, m in enumerate(MIXED)]
    probes = [NIWProbe(every=1) for _ in configs]
    probed = train_stacked(configs, data=DATA, callbacks=[[p] for p in probes])
    bare = train_stacked(configs, data=DATA)
    for p, b in zip(probed, bare, strict=True):  # attaching the probe changes nothing, bit for bit
        assert [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in p.records] == [
            {k: v for k, v in r.items() if k != "epoch_time_s"} for r in b.records
        ]
    assert probes[0].rows == [{"step": s} for s in range(10)]  # no NIWs: a sample of nothing per step
    for config, probe in zip(configs[1:], probes[1:], strict=True):
        alone = NIWProbe(every=1)
        train(config, data=DATA, callbacks=[alone])
        assert [r["step"] for r in probe.rows] == [r["step"] for r in alone.rows] == list(range(10))
        for got, want in zip(probe.rows, alone.rows, strict=True):
            assert got.keys() == want.keys() and len(got) > 1
            assert got == pytest.approx(want, rel=RTOL)


def test_stack_progress_prints_one_line_per_epoch_for_the_whole_stack_and_changes_nothing() -> None:
    configs = [cfg("mlp", seed=i, lr=lr, max_steps=None, epochs=3) for i, lr in enumerate([0.05, 1e6, 0.1])]
    stream = io.StringIO()
    progress = StackProgress("FC | None | seed 0 and 2 more", stream=stream)
    watched = train_stacked(configs, data=DATA, callbacks=[[progress]] * len(configs))
    bare = train_stacked(configs, data=DATA)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"FC | None | seed 0 and 2 more: epoch {e}/3" for e in (1, 2, 3)]
    assert [r.status for r in watched] == ["completed", "diverged", "completed"]  # the second run ends in epoch 1
    assert ", 3 runs (1 diverged), " in lines[0] and "ETA" in lines[0] and "ETA" not in lines[-1]
    for w, b in zip(watched, bare, strict=True):  # a callback only reads: the same bits as without it
        assert [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in w.records] == [
            {k: v for k, v in r.items() if k != "epoch_time_s"} for r in b.records
        ]


def test_callbacks_must_be_one_sequence_per_config() -> None:
    with pytest.raises(ConfigError, match="one entry per config"):
        train_many([cfg(seed=0), cfg(seed=1)], data=DATA, callbacks=[[]])


# -- what stacks, and what a stack's composition changes ----------------------------------------------------


def test_a_dense_run_gets_the_same_bits_in_any_stack() -> None:
    """The property the sweep relies on to split stacks over workers and resume part-finished stacks. A claim for
    one machine and one thread count (the module runs on one thread, as every sweep run does): the batched matrix
    product computes each run's product with the same kernel and summation order whatever the runs beside it, so
    the bits agree; another CPU computes other bits, alike for every stack composition."""
    a = cfg("mlp", MIXED[1], seed=0, max_steps=6)
    b, c = cfg("mlp", seed=1, max_steps=6), cfg("mlp", MIXED[2], seed=2, lr=0.1, max_steps=6)
    d = cfg("mlp", (MethodSpec("l2", {"coefficient": 1e-3}),), seed=3, momentum=0.9, max_steps=6)
    e = cfg("mlp", (MethodSpec("dropout"), MethodSpec("weight-noise")), seed=4, max_steps=6)
    assert composition_invariant(a)
    reference = train_stacked([a], data=DATA)[0]
    noisy = train_stacked([e], data=DATA)[0]  # dropout and weight noise: element-wise ops on each run's slice
    for stack, slot in (([b, a], 1), ([a, c, d, e], 0), ([d, c, b, e, a], 4), ([a, e], 1)):
        got = train_stacked(stack, data=DATA)[slot]
        ref = noisy if stack[slot] is e else reference
        strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rs]  # noqa: E731
        assert strip(got.records) == strip(ref.records)
        for p, q in zip(got.model.state_dict().values(), ref.model.state_dict().values(), strict=True):
            assert torch.equal(p, q)


def test_which_configs_train_one_by_one_and_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert solo_reason(cfg("mlp")) is None
    assert solo_reason(cfg("mlp", (MethodSpec("dropout"),))) is None
    monkeypatch.setattr(Dropout, "stackable", False)
    assert "method(s) ['dropout'] have no stacked form" in str(solo_reason(cfg("mlp", (MethodSpec("dropout"),))))
    assert "has convolutions, which train faster one by one than stacked on cpu" in str(solo_reason(cfg("cnn")))
    assert not composition_invariant(cfg("cnn"))
    assert "has no stacked form" in str(solo_reason(cfg("mlp").replace(model="resnet18", model_kwargs={"width": 4})))
    cnns = [cfg("cnn", seed=s, max_steps=2, epochs=1) for s in range(2)]
    assert group_stackable(cnns) == [[0], [1]]
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        results = train_many(cnns, data=DATA)
    assert all("stacked" not in r.setup for r in results) and "has convolutions" in caplog.text
    (lone,) = train_many([cfg("mlp", max_steps=2, epochs=1)], data=DATA, min_stack=1)
    assert lone.setup["stacked"] == {"runs": 1, "index": 0}


# -- the stacked ops against the single-run functional ops, in float64 --------------------------------------


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


def test_stacked_linear_matches_nin_linear() -> None:
    k, b, i, o = 3, 5, 4, 6
    x, w, bias, niw, eps = _rand(k, b, i), _rand(k, o, i), _rand(k, o), _rand(k, o), _rand(k, b)
    got = stacked_linear(x, w.transpose(1, 2).contiguous(), bias, niw, eps)
    want = torch.stack([nin_linear(x[j], w[j], bias[j], niw[j], eps[j]) for j in range(k)])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(stacked_linear(x, w.mT, None), torch.stack([x[j] @ w[j].T for j in range(k)]))


@pytest.mark.parametrize("per_pixel", [False, True])
def test_stacked_conv_channel_nin_matches_single(per_pixel: bool) -> None:
    k, b, c, o, h = 2, 3, 2, 4, 6
    x, w, bias, niw = _rand(b, k * c, h, h), _rand(k * o, c, 3, 3), _rand(k * o), _rand(k * o, 1, 3, 3)
    eps = _rand(b, k, h, h) if per_pixel else _rand(b, k)
    geometry = ((2, 2), (1, 1), (1, 1))
    got = stacked_nin_channel(stacked_conv2d(x, w, bias, k, *geometry), niw, eps, k, (h, h), *geometry)
    for j in range(k):
        conv = torch.nn.functional.conv2d(
            x[:, j * c : (j + 1) * c], w[j * o : (j + 1) * o], bias[j * o : (j + 1) * o], 2, 1
        )
        e = eps[:, j : j + 1] if per_pixel else eps[:, j]
        want = nin_conv2d_channel(
            conv, niw[j * o : (j + 1) * o], e, (h, h), lambda i, wt: torch.nn.functional.conv2d(i, wt, None, 2, 1)
        )
        torch.testing.assert_close(got[:, j * o : (j + 1) * o], want)


def test_stacked_additive_nin_matches_single() -> None:
    k, b, c, h = 3, 2, 2, 4
    x, niw, eps = _rand(b, k * c, h, h), _rand(k, c, h, h), _rand(b, k)
    got = stacked_nin_additive(x, niw, eps, k)
    for j in range(k):
        torch.testing.assert_close(
            got[:, j * c : (j + 1) * c], nin_additive(x[:, j * c : (j + 1) * c], niw[j], eps[:, j])
        )


def test_stacked_additive_conv_nin_matches_noise_added_before_the_conv() -> None:
    """conv(x) + eps conv(niw), per run, equals the literal conv(x + niw eps): forward and every gradient."""
    k, b, c, o, h = 3, 4, 2, 5, 7
    geometry = ((2, 2), (1, 1), (1, 1))
    leaves = [_rand(b, k * c, h, h), _rand(k * o, c, 3, 3), _rand(k * o), _rand(k, c, h, h)]
    eps = _rand(b, k)
    grads = []
    for literal in (True, False):
        x, w, bias, niw = (t.clone().requires_grad_() for t in leaves)
        if literal:
            out = stacked_conv2d(stacked_nin_additive(x, niw, eps, k), w, bias, k, *geometry)
        else:
            out = stacked_nin_additive_conv(stacked_conv2d(x, w, bias, k, *geometry), niw, eps, k, w, *geometry)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append((out.detach(), x.grad, w.grad, bias.grad, niw.grad))
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want)
