"""ResNet18 for small images: shapes, parameter count against the reference architecture, NINs attach."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ninr.errors import ConfigError
from ninr.models import MODELS, build_model
from ninr.nn import attach_nins, niws


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_as_resnet18() -> None:
    assert "resnet18" in MODELS


def test_parameter_count_matches_the_cifar_resnet18() -> None:
    # The widely used CIFAR-10 ResNet18 (3x3 stem, no max-pool, 2-2-2-2 basic blocks, widths 64..512)
    # has 11,173,962 parameters; BatchNorm affine weights included.
    assert _params(build_model("resnet18", (3, 32, 32), 10)) == 11_173_962


@pytest.mark.parametrize("shape", [(2, 16, 16), (2, 32, 32), (3, 8, 8)])
def test_forward_and_backward_on_image_shapes(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", shape, 2, width=4)
    x = torch.randn(5, *shape)
    out = model(x)
    assert out.shape == (5, 2)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters() if p.grad is not None)


def test_width_sets_the_channels_of_every_stage() -> None:
    model = build_model("resnet18", (2, 16, 16), 2, width=8)
    convs = [m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n]
    assert convs[0] == 8 and convs[-1] == 64
    assert model.fc.in_features == 64
    with pytest.raises(ConfigError, match="`width`"):
        build_model("resnet18", (2, 16, 16), 2, width=0)


@pytest.mark.parametrize("per", ["example", "pixel"])
def test_nins_attach_to_every_conv_and_the_head(per: str) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", (2, 16, 16), 2, width=4)
    x = torch.randn(6, 2, 16, 16)
    report = attach_nins(model, "all", sigma=0.5, per=per, seed=0, example_input=x[:2])  # type: ignore[arg-type]
    # stem conv + 16 block convs + 3 downsample convs + fc
    assert len(report.nodes) == 21
    assert report.layers[0] == "conv1" and report.layers[-1] == "fc"
    model.train()
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()
    grads = [w.grad for w in niws(model).values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_in_ninr_attaches_to_the_stem() -> None:
    model = build_model("resnet18", (2, 16, 16), 2, width=4)
    report = attach_nins(model, "input", example_input=torch.zeros(2, 2, 16, 16))
    assert report.layers == ["conv1"]
