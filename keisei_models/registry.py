"""The architecture registry: built-ins and third-party models discovered through entry points.

Discovery is lazy and happens once per registry: the first call that needs the list of
architectures loads every entry point in the ``keisei_models.architectures`` group. A broken
entry point never breaks the registry: it is recorded with its error, a warning names it, and
only ``get()`` of that name fails.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from .constants import NUM_ACTIONS, OBSERVATION_SHAPE

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArchitectureLoadError",
    "ArchitectureLoadWarning",
    "ArchitectureRegistry",
    "ArchitectureSpec",
    "UnknownArchitectureError",
]

#: The entry-point group other distributions use to contribute architectures.
ENTRY_POINT_GROUP = "keisei_models.architectures"

#: A real Shogi position has around 80 legal moves (at most 593); example masks mimic that.
_TYPICAL_LEGAL_MOVES = 80
#: Fraction of observation planes cells that are set; Keisei's planes are mostly 0/1 and sparse.
_OBSERVATION_DENSITY = 0.15


class UnknownArchitectureError(LookupError):
    """No architecture of that name is registered; the message lists the available ones."""


class ArchitectureLoadError(LookupError):
    """The entry point for this architecture failed to load; ``__cause__`` is the original error."""


class ArchitectureLoadWarning(UserWarning):
    """An entry point in ``keisei_models.architectures`` could not be loaded.

    The other architectures are unaffected. Whoever ships the named distribution should fix the
    import error or make the entry point's object an ``ArchitectureSpec``.
    """


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything needed to build a model and feed it: factory, defaults, input and action sizes."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...] = OBSERVATION_SHAPE
    num_actions: int = NUM_ACTIONS
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ArchitectureSpec.name must be a non-empty string, got {self.name!r}")
        if not callable(self.factory):
            raise TypeError(f"ArchitectureSpec {self.name!r}: factory {self.factory!r} is not callable")
        shape = tuple(self.input_shape)
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(
                f"ArchitectureSpec {self.name!r}: input_shape must be positive ints, got {self.input_shape!r}"
            )
        if not isinstance(self.num_actions, int) or self.num_actions < 1:
            raise ValueError(
                f"ArchitectureSpec {self.name!r}: num_actions must be a positive int, "
                f"got {self.num_actions!r}"
            )
        # Read-only copies: a spec is shared by every caller of the registry.
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


def _installed_entry_points() -> Iterable[EntryPoint]:
    return entry_points(group=ENTRY_POINT_GROUP)


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    origin = f" from distribution {dist.name!r}" if dist is not None else ""
    return f"entry point {ep.name!r} ({ep.value}){origin}"


def _accepted_keywords(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names the factory accepts, or None when it takes ``**kwargs`` or cannot be inspected."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds}


class ArchitectureRegistry:
    """Name -> :class:`ArchitectureSpec`, filled from entry points on first use and by ``register``.

    ``entry_points`` is the discovery function; tests pass their own.
    """

    def __init__(self, entry_points: Callable[[], Iterable[EntryPoint]] = _installed_entry_points) -> None:
        self._discover = entry_points
        self._specs: dict[str, ArchitectureSpec] = {}
        self._broken: dict[str, ArchitectureLoadError] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- discovery ---------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            for ep in self._discover():
                self._load_entry_point(ep)
            self._loaded = True

    def _load_entry_point(self, ep: EntryPoint) -> None:
        if ep.name in self._specs or ep.name in self._broken:
            warnings.warn(
                ArchitectureLoadWarning(f"{_describe(ep)} ignored: name {ep.name!r} is already registered"),
                stacklevel=4,
            )
            return
        try:
            obj = ep.load()
            if not isinstance(obj, ArchitectureSpec):
                raise TypeError(f"expected an ArchitectureSpec, got {type(obj).__name__}")
            if obj.name != ep.name:
                raise ValueError(f"the entry point is named {ep.name!r} but its spec is named {obj.name!r}")
        except Exception as exc:  # any failure of third-party code is recorded, never raised here
            error = ArchitectureLoadError(
                f"architecture {ep.name!r} is unavailable: {_describe(ep)} failed to load: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._broken[ep.name] = error
            warnings.warn(ArchitectureLoadWarning(str(error)), stacklevel=4)
            return
        self._specs[ep.name] = obj

    # -- queries -----------------------------------------------------------------------------
    def available(self) -> list[str]:
        """Sorted names of every architecture that can be built."""
        self._ensure_loaded()
        return sorted(self._specs)

    def get(self, name: str) -> ArchitectureSpec:
        """The spec registered under ``name``.

        Raises:
            UnknownArchitectureError: nothing of that name; the message lists what is available.
            ArchitectureLoadError: its entry point failed to load; chained to the original error.
        """
        self._ensure_loaded()
        try:
            return self._specs[name]
        except KeyError:
            pass
        if name in self._broken:
            error = self._broken[name]
            raise ArchitectureLoadError(str(error)) from error.__cause__
        listed = ", ".join(self.available()) or "none"
        raise UnknownArchitectureError(f"unknown architecture {name!r}; available: {listed}")

    def register(self, spec: ArchitectureSpec, *, replace: bool = False) -> None:
        """Add ``spec`` in this process; a taken name raises ``ValueError`` unless ``replace``."""
        if not isinstance(spec, ArchitectureSpec):
            raise TypeError(f"register() expects an ArchitectureSpec, got {type(spec).__name__}")
        self._ensure_loaded()
        with self._lock:
            taken = spec.name in self._specs or spec.name in self._broken
            if taken and not replace:
                raise ValueError(
                    f"architecture {spec.name!r} is already registered; pass replace=True to override it"
                )
            self._broken.pop(spec.name, None)
            self._specs[spec.name] = spec

    # -- construction ------------------------------------------------------------------------
    def build(self, name: str, *, seed: int = 0, **overrides: Any) -> nn.Module:
        """Call the factory with ``defaults`` updated by ``overrides``, weights seeded by ``seed``.

        The caller's global RNG state (CPU and CUDA) is restored afterwards.
        """
        spec = self.get(name)
        accepted = _accepted_keywords(spec.factory)
        if accepted is not None:
            for source, keywords in (("override", overrides), ("default", spec.defaults)):
                unknown = sorted(set(keywords) - accepted)
                if unknown:
                    raise TypeError(
                        f"build({name!r}): {source}(s) {', '.join(map(repr, unknown))} not accepted by "
                        f"{getattr(spec.factory, '__qualname__', spec.factory)!r}; "
                        f"it accepts {', '.join(sorted(accepted)) or 'no keywords'}"
                    )
        cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            model = spec.factory(**{**spec.defaults, **overrides})
        if not isinstance(model, nn.Module):
            raise TypeError(f"factory of {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def example_inputs(
        self,
        name: str,
        batch_size: int = 1,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, ...]:
        """A deterministic batch of sparse 0/1 observation planes, shaped ``(batch_size, *input_shape)``."""
        spec = self.get(name)
        _check_batch_size(batch_size)
        generator = torch.Generator().manual_seed(seed)
        probs = torch.full((batch_size, *spec.input_shape), _OBSERVATION_DENSITY)
        obs = torch.bernoulli(probs, generator=generator)
        return (obs.to(device=device, dtype=dtype),)

    def example_legal_mask(
        self,
        name: str,
        batch_size: int = 1,
        *,
        seed: int = 0,
        legal_moves: int = _TYPICAL_LEGAL_MOVES,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """A deterministic bool mask ``[batch_size, num_actions]``, ``legal_moves`` legal per row."""
        spec = self.get(name)
        _check_batch_size(batch_size)
        if not 1 <= legal_moves <= spec.num_actions:
            raise ValueError(f"legal_moves must be in [1, {spec.num_actions}], got {legal_moves}")
        generator = torch.Generator().manual_seed(seed)
        scores = torch.rand((batch_size, spec.num_actions), generator=generator)
        chosen = scores.topk(legal_moves, dim=-1).indices
        mask = torch.zeros((batch_size, spec.num_actions), dtype=torch.bool)
        mask.scatter_(-1, chosen, True)
        return mask.to(device)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
