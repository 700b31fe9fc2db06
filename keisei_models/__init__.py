"""Keisei's Shogi actor-critic architectures and the registry other projects extend.

Architectures are discovered through the ``keisei_models.architectures`` entry-point group; the
built-ins (``resnet_tower``, ``se_resnet`` and their small and tiny variants) are registered the
same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .constants import (
    BOARD_SIZE,
    INPUT_PLANES,
    NUM_ACTIONS,
    NUM_BOARD_MOVES,
    NUM_DROP_MOVES,
    OBSERVATION_SHAPE,
)
from .protocol import ActorCriticBase, ActorCriticProtocol, apply_legal_mask
from .registry import (
    ENTRY_POINT_GROUP,
    ArchitectureLoadError,
    ArchitectureLoadWarning,
    ArchitectureRegistry,
    ArchitectureSpec,
    UnknownArchitectureError,
)
from .se_resnet import SEResNetOutput, TrainingBatch, example_training_batch, training_loss

__all__ = [
    "BOARD_SIZE",
    "ENTRY_POINT_GROUP",
    "INPUT_PLANES",
    "NUM_ACTIONS",
    "NUM_BOARD_MOVES",
    "NUM_DROP_MOVES",
    "OBSERVATION_SHAPE",
    "ActorCriticBase",
    "ActorCriticProtocol",
    "ArchitectureLoadError",
    "ArchitectureLoadWarning",
    "ArchitectureRegistry",
    "ArchitectureSpec",
    "SEResNetOutput",
    "TrainingBatch",
    "UnknownArchitectureError",
    "apply_legal_mask",
    "available",
    "build",
    "default_registry",
    "example_inputs",
    "example_legal_mask",
    "example_training_batch",
    "get",
    "register",
    "training_loss",
]

_REGISTRY = ArchitectureRegistry()


def default_registry() -> ArchitectureRegistry:
    """The process-wide registry that the module-level functions use."""
    return _REGISTRY


def available() -> list[str]:
    """Sorted names of every registered architecture."""
    return _REGISTRY.available()


def get(name: str) -> ArchitectureSpec:
    """The spec of ``name``; :class:`UnknownArchitectureError` lists the names when it is unknown."""
    return _REGISTRY.get(name)


def register(spec: ArchitectureSpec, *, replace: bool = False) -> None:
    """Register ``spec`` in this process; a duplicate name raises ``ValueError`` unless ``replace``."""
    _REGISTRY.register(spec, replace=replace)


def build(name: str, *, seed: int = 0, **overrides: Any) -> nn.Module:
    """Build ``name`` with its defaults updated by ``overrides``, weights deterministic in ``seed``."""
    return _REGISTRY.build(name, seed=seed, **overrides)


def example_inputs(
    name: str,
    batch_size: int = 1,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, ...]:
    """A deterministic observation batch of shape ``(batch_size, *input_shape)``."""
    return _REGISTRY.example_inputs(name, batch_size, seed=seed, device=device, dtype=dtype)


def example_legal_mask(
    name: str,
    batch_size: int = 1,
    *,
    seed: int = 0,
    legal_moves: int = 80,
    device: str | torch.device = "cpu",
) -> Tensor:
    """A deterministic legal-action mask ``[batch_size, num_actions]`` with ``legal_moves`` per row."""
    return _REGISTRY.example_legal_mask(name, batch_size, seed=seed, legal_moves=legal_moves, device=device)
