"""Third-party plugins through importlib.metadata entry points.

Each test writes small plugin distributions (a module plus a ``*.dist-info`` directory with ``METADATA``
and ``entry_points.txt``) into ``tmp_path`` and puts it on ``sys.path``, where
``importlib.metadata.entry_points()`` finds them. The ``clean_registries`` fixture restores every registry
(and the corruption severity tables) afterwards, so the test order does not matter.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ninr.registry
from ninr.cli import main
from ninr.cli.registries import LOADED  # importing it creates every registry of ninr
from ninr.data.base import DATASETS
from ninr.errors import ConfigError, UnknownNameError
from ninr.functional.noise import DISTRIBUTIONS
from ninr.methods.base import METHODS, build
from ninr.models.registry import MODELS, build_model
from ninr.registry import PluginWarning, Registry, load_plugins
from ninr.robustness.attacks import ATTACKS
from ninr.robustness.corruptions.base import CORRUPTIONS, INTENSITY_NAMES
from ninr.robustness.severities import TABLES

assert LOADED

DEMO_PLUGIN = '''
"""A demo plugin: importing it registers one component in each of five registries."""

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ninr.functional.noise import DISTRIBUTIONS, zero_at_zero_scale
from ninr.methods.base import Method, register
from ninr.models.registry import MODELS
from ninr.robustness.attacks import ATTACKS
from ninr.robustness.corruptions.base import register as register_corruption
from ninr.robustness.severities import TABLES, SeverityTable


@register
@dataclass(frozen=True)
class DemoMethod(Method):
    """Demo plugin method that changes nothing."""

    name: ClassVar[str] = "demo-method"
    strength: float = 1.0


TABLES["demo-fade"] = SeverityTable((0.1, 0.2, 0.3, 0.4, 0.5), "blend weight toward grey", "demo plugin")


@register_corruption("demo-fade", "digital")
def demo_fade(x, level, state):
    """Demo plugin corruption: blend toward grey."""
    return x * (1 - level) + 0.5 * level


@ATTACKS.register("demo-attack")
def demo_attack(model, x, y, epsilons, **options):
    """Demo plugin attack that returns the input once per epsilon."""
    return x.detach().repeat(len(epsilons), 1, 1, 1)


@MODELS.register("demo-model")
def demo_model(input_shape, num_classes, **kwargs):
    """Demo plugin model: one linear layer."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


@DISTRIBUTIONS.register("demo-noise")
@zero_at_zero_scale
def demo_noise(shape, *, scale, generator=None, device=None, dtype=torch.float32):
    """Demo plugin noise: +-scale with equal probability."""
    signs = torch.randint(0, 2, tuple(shape), generator=generator, device=device).to(dtype) * 2 - 1
    return signs * scale
'''

DEMO_OBJECTS = '''
"""Components that do not register themselves (``module:attr`` entry points)."""

from typing import ClassVar

from dataclasses import dataclass

from torch import nn

from ninr.methods.base import Method


@dataclass(frozen=True)
class PlainMethod(Method):
    """Demo method registered by its entry point."""

    name: ClassVar[str] = "demo-plain"


def tiny_model(input_shape, num_classes, **kwargs):
    """Demo model registered by its entry point."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
'''

DEMO_ENTRY_POINTS = """
[ninr.methods]
demo = ninr_demo_plugin
demo-plain = ninr_demo_objects:PlainMethod

[ninr.corruptions]
demo = ninr_demo_plugin

[ninr.attacks]
demo = ninr_demo_plugin

[ninr.models]
demo = ninr_demo_plugin
demo-attr-model = ninr_demo_objects:tiny_model

[ninr.distributions]
demo = ninr_demo_plugin
"""

PLUGIN_MODULES = ("ninr_demo_plugin", "ninr_demo_objects", "ninr_broken_plugin")


def write_distribution(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution ``name`` 0.1: its modules and its ``.dist-info`` metadata."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def clean_registries() -> Iterator[None]:
    """Every registry unloaded for the test (plugins are looked up afresh), and as it was afterwards."""
    regs = dict(ninr.registry._ALL)
    saved = {kind: (dict(r._items), dict(r._docs), r._plugins_loaded) for kind, r in regs.items()}
    tables, intensity = dict(TABLES), list(INTENSITY_NAMES)
    for r in regs.values():
        r._plugins_loaded = r.group is None
    try:
        yield
    finally:
        for kind, r in regs.items():
            items, docs, loaded = saved[kind]
            r._items.clear()
            r._items.update(items)
            r._docs.clear()
            r._docs.update(docs)
            r._plugins_loaded = loaded
        ninr.registry._ALL.clear()
        ninr.registry._ALL.update(regs)
        TABLES.clear()
        TABLES.update(tables)
        INTENSITY_NAMES[:] = intensity
        for module in PLUGIN_MODULES:
            sys.modules.pop(module, None)


@pytest.fixture
def demo_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The distribution ``ninr-demo-plugin`` installed on ``sys.path``."""
    modules = {"ninr_demo_plugin": DEMO_PLUGIN, "ninr_demo_objects": DEMO_OBJECTS}
    write_distribution(tmp_path, "ninr-demo-plugin", DEMO_ENTRY_POINTS, modules)
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import and metadata caches
    return tmp_path


@pytest.mark.parametrize(
    ("registry", "name"),
    [
        (METHODS, "demo-method"),
        (CORRUPTIONS, "demo-fade"),
        (ATTACKS, "demo-attack"),
        (MODELS, "demo-model"),
        (DISTRIBUTIONS, "demo-noise"),
    ],
    ids=lambda v: v.kind if isinstance(v, Registry) else v,
)
def test_a_miss_loads_the_registrys_plugins(registry: Registry[object], name: str, demo_plugin: Path) -> None:
    assert name not in registry._items and "ninr_demo_plugin" not in sys.modules  # nothing loaded yet
    assert registry.get(name) is registry._items[name]
    assert registry._plugins_loaded


def test_plugin_components_work(demo_plugin: Path) -> None:
    method = build("demo-method", {"strength": 2.0})
    assert method.name == "demo-method" and method.params() == {"strength": 2.0}
    x = torch.full((2, 1, 4, 4), 0.25)
    torch.testing.assert_close(CORRUPTIONS.get("demo-fade")(x, 5), torch.full_like(x, 0.375))
    model = build_model("demo-model", (1, 4, 4), 3)
    assert model(x).shape == (2, 3)
    assert ATTACKS.get("demo-attack")(model, x, torch.zeros(2, dtype=torch.int64), [0.0, 0.1]).shape == (4, 1, 4, 4)
    draw = DISTRIBUTIONS.get("demo-noise")((1000,), scale=0.5, generator=torch.Generator().manual_seed(0))
    assert set(draw.unique().tolist()) == {-0.5, 0.5}


def test_loading_is_lazy_and_once_per_group(demo_plugin: Path) -> None:
    METHODS.get("demo-method")
    # the module entry point registered its model too; the models group itself is not loaded yet
    assert "demo-model" in MODELS._items and "demo-attr-model" not in MODELS._items
    assert not MODELS._plugins_loaded
    assert "demo-attr-model" in MODELS  # a miss of `in` loads the group
    assert MODELS._plugins_loaded
    with pytest.raises(UnknownNameError, match="unknown model 'demo-modle'; did you mean 'demo-model'"):
        MODELS.get("demo-modle")


@pytest.mark.parametrize("ask", [Registry.names, Registry.describe, list, len], ids=lambda f: f.__name__)
def test_the_full_list_includes_plugins(ask: object, demo_plugin: Path) -> None:
    assert callable(ask)
    ask(METHODS)
    assert {"demo-method", "demo-plain"} <= set(METHODS._items)


def test_module_attr_entry_points_register_under_their_name(demo_plugin: Path) -> None:
    assert build_model("demo-attr-model", (1, 4, 4), 2)(torch.zeros(1, 1, 4, 4)).shape == (1, 2)
    assert MODELS.describe()["demo-attr-model"] == "Demo model registered by its entry point."
    assert build("demo-plain").name == "demo-plain"


def test_ninr_list_shows_plugins(demo_plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "demo-method" in out and "Demo plugin method that changes nothing." in out
    assert "demo-plain" in out


def test_load_plugins_loads_every_group(demo_plugin: Path) -> None:
    load_plugins()
    assert {"demo-plain", "demo-method"} <= set(METHODS._items)
    assert "demo-attr-model" in MODELS._items
    assert all(r._plugins_loaded for r in ninr.registry.registries().values())


def test_a_broken_plugin_warns_and_the_rest_work(demo_plugin: Path) -> None:
    broken = """
    [ninr.distributions]
    broken = ninr_broken_plugin

    [ninr.methods]
    missing = ninr_demo_objects:NoSuchMethod
    misnamed = ninr_demo_objects:PlainMethod
    """
    source = "import ninr_no_such_dependency\n"
    write_distribution(demo_plugin, "ninr-broken-plugin", broken, {"ninr_broken_plugin": source})
    with pytest.warns(PluginWarning) as caught:
        assert DISTRIBUTIONS.get("demo-noise") is DISTRIBUTIONS._items["demo-noise"]
        assert "gaussian" in DISTRIBUTIONS.names()
        assert {"demo-method", "demo-plain", "none"} <= set(METHODS.names())
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 3, messages
    assert all("'ninr-broken-plugin'" in m for m in messages)
    assert "plugin 'broken' = 'ninr_broken_plugin'" in messages[0]
    assert "ModuleNotFoundError: No module named 'ninr_no_such_dependency'" in messages[0]
    assert "plugin 'misnamed'" in messages[1] and "`name` is 'demo-plain'" in messages[1]
    assert "plugin 'missing'" in messages[2] and "AttributeError" in messages[2]
    assert "misnamed" not in METHODS._items and "missing" not in METHODS._items
    assert MODELS.get("demo-attr-model") is not None and DATASETS.get("synthetic") is not None


def test_a_plugin_taking_a_registered_name_raises_naming_it(demo_plugin: Path) -> None:
    taken = """
    [ninr.models]
    mlp = ninr_demo_objects:tiny_model
    """
    write_distribution(demo_plugin, "ninr-taken-plugin", taken, {})
    with pytest.raises(
        ConfigError,
        match=r"model 'mlp' is already registered; plugin 'mlp' = 'ninr_demo_objects:tiny_model' .*'ninr-taken-plugin'",
    ):
        MODELS.get("no-such-model")
