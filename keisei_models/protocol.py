"""The actor-critic interface Keisei's training loop relies on, and a base class providing it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

__all__ = ["ActorCriticBase", "ActorCriticProtocol", "apply_legal_mask"]


@runtime_checkable
class ActorCriticProtocol(Protocol):
    """What a Keisei policy/value network offers: a forward pass and the two PPO action methods."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(policy_logits [B, A], value [B])`` for observations ``x [B, C, H, W]``."""
        ...

    def get_action_and_value(
        self, obs: Tensor, legal_mask: Tensor | None = None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Pick an action per observation: ``(action [B], log_prob [B], value [B])``."""
        ...

    def evaluate_actions(
        self, obs: Tensor, actions: Tensor, legal_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Score given actions: ``(log_probs [B], entropy [B], value [B])``."""
        ...


def apply_legal_mask(logits: Tensor, legal_mask: Tensor | None) -> Tensor:
    """Return ``logits`` with illegal actions pushed to the dtype's lowest value.

    The lowest finite value rather than ``-inf`` keeps every later operation finite; the
    resulting probability of an illegal action is exactly zero after softmax.

    Raises:
        ValueError: the mask has the wrong shape or dtype, or some row allows no action at all
            (softmax over nothing would silently produce NaNs).
    """
    if legal_mask is None:
        return logits
    if legal_mask.dtype != torch.bool:
        raise ValueError(f"legal_mask must be a bool tensor, got dtype {legal_mask.dtype}")
    if legal_mask.shape != logits.shape:
        raise ValueError(
            f"legal_mask shape {tuple(legal_mask.shape)} does not match policy logits "
            f"shape {tuple(logits.shape)}"
        )
    has_legal = legal_mask.any(dim=-1)
    if not bool(has_legal.all()):
        rows = torch.nonzero(~has_legal).flatten().tolist()
        raise ValueError(f"legal_mask allows no action in batch row(s) {rows}")
    return logits.masked_fill(~legal_mask, torch.finfo(logits.dtype).min)


class ActorCriticBase(nn.Module):
    """Implements the action methods of :class:`ActorCriticProtocol` on top of ``forward``.

    Subclasses define ``forward(x) -> (policy_logits, value)`` only.
    """

    def _distribution(self, obs: Tensor, legal_mask: Tensor | None) -> tuple[Categorical, Tensor]:
        logits, value = self(obs)
        masked = apply_legal_mask(logits, legal_mask)
        return Categorical(logits=masked, validate_args=False), value

    def get_action_and_value(
        self, obs: Tensor, legal_mask: Tensor | None = None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sample (or, when ``deterministic``, take the argmax of) a legal action per row."""
        dist, value = self._distribution(obs, legal_mask)
        action = dist.probs.argmax(dim=-1) if deterministic else dist.sample()
        return action, dist.log_prob(action), value

    def evaluate_actions(
        self, obs: Tensor, actions: Tensor, legal_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probabilities and entropy of the masked policy for ``actions``, and the value."""
        dist, value = self._distribution(obs, legal_mask)
        return dist.log_prob(actions), dist.entropy(), value
