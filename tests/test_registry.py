"""The architecture registry: discovery through entry points, errors, determinism, overrides."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch import nn

import keisei_models
from keisei_models import (
    ENTRY_POINT_GROUP,
    ArchitectureLoadError,
    ArchitectureLoadWarning,
    ArchitectureRegistry,
    ArchitectureSpec,
    UnknownArchitectureError,
)


class _Linear(nn.Module):
    def __init__(self, width: int = 4, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 2, bias=bias)


def _spec(name: str = "linear", **kwargs: object) -> ArchitectureSpec:
    return ArchitectureSpec(name=name, factory=_Linear, input_shape=(4,), num_actions=2, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module holding a good spec, a non-spec object and a misnamed spec."""
    name = "third_party_arch"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            from keisei_models import ArchitectureSpec

            class Tiny(nn.Module):
                def __init__(self, width=3):
                    super().__init__()
                    self.fc = nn.Linear(width, 1)

            GOOD = ArchitectureSpec(name="good", factory=Tiny, input_shape=(3,), num_actions=1)
            NOT_A_SPEC = 42
            MISNAMED = ArchitectureSpec(name="other", factory=Tiny)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _registry(*eps: EntryPoint) -> ArchitectureRegistry:
    return ArchitectureRegistry(entry_points=lambda: eps)


def test_builtins_are_discovered_through_installed_entry_points() -> None:
    assert {"resnet_tower", "resnet_tower_tiny"} <= set(keisei_models.available())
    assert keisei_models.available() == sorted(keisei_models.available())
    spec = keisei_models.get("resnet_tower")
    assert spec.input_shape == (46, 9, 9)
    assert spec.num_actions == 13_527
    assert dict(spec.defaults) == {"tower_depth": 9, "tower_width": 256, "se_ratio": 0.25}


def test_entry_points_load_lazily_and_once() -> None:
    calls = []

    def discover() -> list[EntryPoint]:
        calls.append(1)
        return []

    registry = ArchitectureRegistry(entry_points=discover)
    assert calls == []
    registry.register(_spec())
    registry.available()
    registry.get("linear")
    assert calls == [1]


def test_entry_point_from_an_installed_distribution(tmp_path: Path, plugin_module: str) -> None:
    """A real .dist-info on sys.path is found by importlib.metadata, as after `pip install`."""
    dist_info = tmp_path / "third_party_arch-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-arch\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ngood = {plugin_module}:GOOD\n")
    registry = ArchitectureRegistry()
    assert "good" in registry.available()
    assert "resnet_tower" in registry.available()
    model = registry.build("good")
    assert isinstance(model, nn.Module)
    assert registry.example_inputs("good", 5)[0].shape == (5, 3)


@pytest.mark.parametrize(
    ("value", "cause", "detail"),
    [
        ("no_such_module_xyz:SPEC", ModuleNotFoundError, "No module named 'no_such_module_xyz'"),
        ("{module}:NOT_A_SPEC", TypeError, "expected an ArchitectureSpec, got int"),
        ("{module}:MISNAMED", ValueError, "its spec is named 'other'"),
        ("{module}:MISSING", AttributeError, "MISSING"),
    ],
)
def test_broken_entry_point_warns_and_spares_the_rest(
    plugin_module: str, value: str, cause: type[Exception], detail: str
) -> None:
    broken = EntryPoint("broken", value.format(module=plugin_module), ENTRY_POINT_GROUP)
    good = EntryPoint("good", f"{plugin_module}:GOOD", ENTRY_POINT_GROUP)
    registry = _registry(broken, good)
    with pytest.warns(ArchitectureLoadWarning, match="'broken'") as record:
        assert registry.available() == ["good"]
    assert detail in str(record[0].message)
    assert registry.build("good") is not None
    with pytest.raises(ArchitectureLoadError, match="'broken' is unavailable") as excinfo:
        registry.get("broken")
    assert isinstance(excinfo.value.__cause__, cause)
    assert detail in str(excinfo.value)


def test_duplicate_entry_point_name_keeps_the_first(plugin_module: str) -> None:
    first = EntryPoint("good", f"{plugin_module}:GOOD", ENTRY_POINT_GROUP)
    second = EntryPoint("good", f"{plugin_module}:MISNAMED", ENTRY_POINT_GROUP)
    registry = _registry(first, second)
    with pytest.warns(ArchitectureLoadWarning, match="already registered"):
        assert registry.get("good").factory.__name__ == "Tiny"


def test_unknown_name_lists_available() -> None:
    registry = _registry()
    registry.register(_spec("alpha"))
    registry.register(_spec("beta"))
    with pytest.raises(
        UnknownArchitectureError, match=r"unknown architecture 'gamma'; available: alpha, beta"
    ):
        registry.get("gamma")
    assert issubclass(UnknownArchitectureError, LookupError)


def test_register_rejects_duplicates_unless_replace() -> None:
    registry = _registry()
    registry.register(_spec())
    with pytest.raises(ValueError, match="'linear' is already registered; pass replace=True"):
        registry.register(_spec())
    replacement = _spec(description="v2")
    registry.register(replacement, replace=True)
    assert registry.get("linear") is replacement
    with pytest.raises(TypeError, match="expects an ArchitectureSpec"):
        registry.register("linear")  # type: ignore[arg-type]


def test_register_can_replace_a_broken_entry_point() -> None:
    registry = _registry(EntryPoint("linear", "no_such_module_xyz:X", ENTRY_POINT_GROUP))
    with pytest.warns(ArchitectureLoadWarning), pytest.raises(ValueError, match="already registered"):
        registry.register(_spec())
    registry.register(_spec(), replace=True)
    assert registry.available() == ["linear"]


def test_spec_is_validated_and_read_only() -> None:
    spec = _spec(defaults={"width": 8})
    with pytest.raises(TypeError):
        spec.defaults["width"] = 9  # type: ignore[index]
    with pytest.raises(ValueError, match="input_shape"):
        ArchitectureSpec(name="x", factory=_Linear, input_shape=(0, 9))
    with pytest.raises(ValueError, match="num_actions"):
        ArchitectureSpec(name="x", factory=_Linear, num_actions=0)
    with pytest.raises(TypeError, match="not callable"):
        ArchitectureSpec(name="x", factory=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ArchitectureSpec(name="", factory=_Linear)


def test_build_applies_defaults_then_overrides() -> None:
    registry = _registry()
    registry.register(_spec(defaults={"width": 8}))
    assert registry.build("linear").fc.in_features == 8
    assert registry.build("linear", width=5, bias=False).fc.in_features == 5
    assert registry.build("linear", bias=False).fc.bias is None


def test_build_names_an_unknown_override() -> None:
    registry = _registry()
    registry.register(_spec())
    with pytest.raises(
        TypeError, match=r"override\(s\) 'depth' not accepted by '_Linear'; it accepts bias, width"
    ):
        registry.build("linear", depth=3)


def test_build_names_an_unknown_default() -> None:
    registry = _registry()
    registry.register(_spec(name="bad", defaults={"widht": 3}))
    with pytest.raises(TypeError, match=r"default\(s\) 'widht'"):
        registry.build("bad")


def test_build_rejects_factories_that_return_non_modules() -> None:
    registry = _registry()
    registry.register(ArchitectureSpec(name="fn", factory=lambda: "not a module"))
    with pytest.raises(TypeError, match=r"returned str, not a torch\.nn\.Module"):
        registry.build("fn")


def test_build_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    a = keisei_models.build("resnet_tower_tiny", seed=7)
    b = keisei_models.build("resnet_tower_tiny", seed=7)
    c = keisei_models.build("resnet_tower_tiny", seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["stem.0.weight"], c.state_dict()["stem.0.weight"])


def test_example_inputs_are_deterministic_and_shaped() -> None:
    (x,) = keisei_models.example_inputs("resnet_tower", 3, seed=1)
    (y,) = keisei_models.example_inputs("resnet_tower", 3, seed=1)
    (z,) = keisei_models.example_inputs("resnet_tower", 3, seed=2)
    assert x.shape == (3, 46, 9, 9)
    assert x.dtype == torch.float32
    assert torch.equal(x, y)
    assert not torch.equal(x, z)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    (h,) = keisei_models.example_inputs("resnet_tower", 2, dtype=torch.float64)
    assert h.dtype == torch.float64
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        keisei_models.example_inputs("resnet_tower", 0)


def test_example_legal_mask() -> None:
    mask = keisei_models.example_legal_mask("resnet_tower", 4, legal_moves=30, seed=3)
    assert mask.shape == (4, 13_527)
    assert mask.dtype == torch.bool
    assert mask.sum(dim=-1).tolist() == [30, 30, 30, 30]
    assert torch.equal(mask, keisei_models.example_legal_mask("resnet_tower", 4, legal_moves=30, seed=3))
    with pytest.raises(ValueError, match="legal_moves"):
        keisei_models.example_legal_mask("resnet_tower", 1, legal_moves=0)
