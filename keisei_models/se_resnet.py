"""Keisei's current network: a KataGo-style SE-ResNet with three heads, and its training batches.

Each block is conv3x3-BN-ReLU, a global-pooling bias (mean, max and population std of the block
input over the board, through a small MLP) added per channel, conv3x3-BN, a squeeze-excitation
that outputs a scale and a shift, the residual add and ReLU. The heads give spatial policy logits
(one plane per move type on each square), win/draw/loss logits and the score lead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from .constants import BOARD_SIZE
from .fused_se import squeeze_excite
from .protocol import ActorCriticBase, apply_legal_mask
from .registry import ArchitectureSpec

__all__ = [
    "SE_RESNET",
    "SE_RESNET_INPUT_PLANES",
    "SE_RESNET_POLICY_PLANES",
    "SE_RESNET_SE_IMPLEMENTATIONS",
    "SE_RESNET_SMALL",
    "SE_RESNET_SPATIAL_ACTIONS",
    "SE_RESNET_TINY",
    "FusedScaleShiftSE",
    "GlobalPoolBias",
    "SEResNet",
    "SEResNetBlock",
    "SEResNetOutput",
    "ScaleShiftSE",
    "TrainingBatch",
    "example_training_batch",
    "training_loss",
]

#: Observation planes of the SE-ResNet (9x9 each).
SE_RESNET_INPUT_PLANES: Final = 50
#: Move types per square: the policy is one logit per (square, move type).
SE_RESNET_POLICY_PLANES: Final = 139
#: Size of the flattened spatial policy: 81 squares x 139 move types.
SE_RESNET_SPATIAL_ACTIONS: Final = BOARD_SIZE * BOARD_SIZE * SE_RESNET_POLICY_PLANES
#: Win, draw, loss.
_VALUE_CLASSES: Final = 3
#: Channels of the value/score head's 1x1 convolution and width of its hidden layer.
_HEAD_CHANNELS: Final = 32
_HEAD_HIDDEN: Final = 64

assert SE_RESNET_SPATIAL_ACTIONS == 11_259


#: Added to the variance before its square root: the std of a constant plane has no gradient.
_STD_EPS: Final = 1e-5


def _pooled(x: Tensor) -> Tensor:
    """Mean, max and population std over the board, concatenated: ``[B, 3C]``.

    Pooled in float32 also under autocast: max's gradient in bfloat16 came out NaN from
    inductor's compiled backward (on CPU, torch 2.13), where eager's was finite.
    """
    flat = x.flatten(2).float()
    std = (flat.var(-1, correction=0) + _STD_EPS).sqrt()
    return torch.cat([flat.mean(-1), flat.amax(-1), std], dim=1)


class GlobalPoolBias(nn.Module):
    """A per-channel bias from board-wide statistics of the block input (KataGo's global pooling)."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * channels, bottleneck)
        self.fc2 = nn.Linear(bottleneck, channels)

    def forward(self, block_input: Tensor) -> Tensor:
        bias: Tensor = self.fc2(F.relu(self.fc1(_pooled(block_input))))
        return bias[:, :, None, None]


class ScaleShiftSE(nn.Module):
    """Squeeze-excitation that outputs a scale and a shift: ``x * sigmoid(scale) + shift``."""

    def __init__(self, channels: int, se_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(channels * se_ratio))
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, 2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        both: Tensor = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))
        scale, shift = both.chunk(2, dim=1)
        return x * torch.sigmoid(scale)[:, :, None, None] + shift[:, :, None, None]


class FusedScaleShiftSE(ScaleShiftSE):
    """:class:`ScaleShiftSE` as one operator, ``keisei::squeeze_excite`` with ``scale_shift``;
    same parameters, same outputs within float32 tolerance."""

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = squeeze_excite(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, True)
        return out


#: ``se_impl`` values of the SE-ResNet: its squeeze-excitation in every block.
SE_RESNET_SE_IMPLEMENTATIONS: Final[dict[str, type[ScaleShiftSE]]] = {
    "plain": ScaleShiftSE,
    "fused": FusedScaleShiftSE,
}


class SEResNetBlock(nn.Module):
    """conv3x3-BN-ReLU, + global-pooling bias, conv3x3-BN, scale/shift SE, residual add, ReLU."""

    def __init__(self, channels: int, se_ratio: float, bottleneck: int, se_impl: str = "plain") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pool_bias = GlobalPoolBias(channels, bottleneck)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SE_RESNET_SE_IMPLEMENTATIONS[se_impl](channels, se_ratio)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x))) + self.pool_bias(x)
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + x)


@dataclass(frozen=True)
class SEResNetOutput:
    """The three heads: policy ``[B, 9, 9, 139]``, value (W/D/L) ``[B, 3]``, score lead ``[B, 1]``."""

    policy_logits: Tensor
    value_logits: Tensor
    score_lead: Tensor


class SEResNet(ActorCriticBase):
    """Stem (3x3 conv without bias, BN, ReLU), ``num_blocks`` SE-ResNet blocks, three heads.

    ``autocast_dtype`` (for example ``torch.bfloat16``) runs the body under autocast; set it
    before compiling, since a compiled graph keeps the autocast state it was traced with.
    ``forward`` returns an :class:`SEResNetOutput`; the actor-critic methods see the policy
    flattened to ``[B, 11259]`` and the value as P(win) - P(loss).
    """

    def __init__(
        self,
        input_planes: int = SE_RESNET_INPUT_PLANES,
        num_blocks: int = 40,
        channels: int = 256,
        se_ratio: float = 1 / 16,
        bottleneck: int = 128,
        policy_planes: int = SE_RESNET_POLICY_PLANES,
        board_size: int = BOARD_SIZE,
        autocast_dtype: torch.dtype | None = None,
        se_impl: str = "plain",
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_planes", input_planes),
            ("channels", channels),
            ("bottleneck", bottleneck),
            ("policy_planes", policy_planes),
            ("board_size", board_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(f"num_blocks must be an int >= 0, got {num_blocks!r}")
        if not 0 < se_ratio <= 1:
            raise ValueError(f"se_ratio must be in (0, 1], got {se_ratio}")
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(
                f"autocast_dtype must be None, torch.bfloat16 or torch.float16, got {autocast_dtype}"
            )
        if se_impl not in SE_RESNET_SE_IMPLEMENTATIONS:
            raise ValueError(
                f"se_impl must be one of {', '.join(SE_RESNET_SE_IMPLEMENTATIONS)}, got {se_impl!r}"
            )
        self.autocast_dtype = autocast_dtype
        self.stem = nn.Sequential(
            nn.Conv2d(input_planes, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            *(SEResNetBlock(channels, se_ratio, bottleneck, se_impl) for _ in range(num_blocks))
        )
        self.policy_head = nn.Conv2d(channels, policy_planes, kernel_size=1)
        self.value_conv = nn.Sequential(
            nn.Conv2d(channels, _HEAD_CHANNELS, kernel_size=1, bias=False),
            nn.BatchNorm2d(_HEAD_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.value_hidden = nn.Linear(3 * _HEAD_CHANNELS, _HEAD_HIDDEN)
        self.value_out = nn.Linear(_HEAD_HIDDEN, _VALUE_CLASSES)
        self.score_out = nn.Linear(_HEAD_HIDDEN, 1)

    def _autocast(self, x: Tensor) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)

    def forward(self, x: Tensor) -> SEResNetOutput:
        with self._autocast(x):
            features = self.blocks(self.stem(x))
            policy = self.policy_head(features).permute(0, 2, 3, 1)
            hidden = F.relu(self.value_hidden(_pooled(self.value_conv(features))))
            value, score = self.value_out(hidden), self.score_out(hidden)
        return SEResNetOutput(policy.float(), value.float(), score.float())

    def _distribution(self, obs: Tensor, legal_mask: Tensor | None) -> tuple[Categorical, Tensor]:
        out = self(obs)
        logits = apply_legal_mask(out.policy_logits.flatten(1), legal_mask)
        wdl = out.value_logits.softmax(-1)
        return Categorical(logits=logits, validate_args=False), wdl[:, 0] - wdl[:, 2]


@dataclass(frozen=True)
class TrainingBatch:
    """One mini-batch of self-play targets for :func:`training_loss`.

    ``observations [B, 50, 9, 9]``, ``legal_mask [B, 11259]`` (bool), ``target_policy [B, 11259]``
    (a distribution over legal moves), ``value_class [B]`` (0 win, 1 draw, 2 loss) and
    ``score [B, 1]``.
    """

    observations: Tensor
    legal_mask: Tensor
    target_policy: Tensor
    value_class: Tensor
    score: Tensor

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The fields in order, for ``step(model, *batch.tensors)``."""
        return (self.observations, self.legal_mask, self.target_policy, self.value_class, self.score)


def example_training_batch(
    batch_size: int = 8,
    *,
    seed: int = 0,
    legal_moves: int = 80,
    input_planes: int = SE_RESNET_INPUT_PLANES,
    device: str | torch.device = "cpu",
) -> TrainingBatch:
    """A deterministic batch: sparse 0/1 planes, ``legal_moves`` legal moves per row, a target
    policy over them, a value class and a score lead."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 1 <= legal_moves <= SE_RESNET_SPATIAL_ACTIONS:
        raise ValueError(f"legal_moves must be in [1, {SE_RESNET_SPATIAL_ACTIONS}], got {legal_moves}")
    g = torch.Generator().manual_seed(seed)
    obs = (torch.rand(batch_size, input_planes, BOARD_SIZE, BOARD_SIZE, generator=g) < 0.1).float()
    legal = torch.zeros(batch_size, SE_RESNET_SPATIAL_ACTIONS, dtype=torch.bool)
    for row in range(batch_size):
        legal[row, torch.randperm(SE_RESNET_SPATIAL_ACTIONS, generator=g)[:legal_moves]] = True
    weights = torch.rand(batch_size, SE_RESNET_SPATIAL_ACTIONS, generator=g) * legal
    target = weights / weights.sum(dim=1, keepdim=True)
    value_class = torch.randint(0, _VALUE_CLASSES, (batch_size,), generator=g)
    score = torch.randn(batch_size, 1, generator=g) * 5
    return TrainingBatch(*(t.to(device) for t in (obs, legal, target, value_class, score)))


def training_loss(
    output: SEResNetOutput, legal_mask: Tensor, target_policy: Tensor, value_class: Tensor, score: Tensor
) -> Tensor:
    """Policy cross-entropy against the target over legal moves, value cross-entropy, and a
    Huber loss on the score lead (scaled down: scores are tens of points)."""
    logits = apply_legal_mask(output.policy_logits.flatten(1), legal_mask)
    # illegal moves' log-probabilities are huge negatives (-inf where a compiler computes the mask
    # in a half dtype): they are zeroed, not multiplied by their zero target (0 * -inf is NaN)
    log_probs = F.log_softmax(logits, dim=-1).masked_fill(~legal_mask, 0.0)
    policy_loss = -(target_policy * log_probs).sum(-1).mean()
    value_loss = F.cross_entropy(output.value_logits, value_class)
    score_loss = F.huber_loss(output.score_lead, score) * 0.02
    return policy_loss + value_loss + score_loss


_INPUT_SHAPE: Final = (SE_RESNET_INPUT_PLANES, BOARD_SIZE, BOARD_SIZE)


def _spec(name: str, defaults: dict[str, Any], description: str) -> ArchitectureSpec:
    """An SE-ResNet size: the same factory, input planes and spatial action space."""
    return ArchitectureSpec(
        name=name,
        factory=SEResNet,
        input_shape=_INPUT_SHAPE,
        num_actions=SE_RESNET_SPATIAL_ACTIONS,
        defaults=defaults,
        description=description,
    )


SE_RESNET = _spec(
    "se_resnet",
    {"num_blocks": 40, "channels": 256, "se_ratio": 1 / 16, "bottleneck": 128},
    "Keisei's current network: 40 SE-ResNet blocks x 256 channels, global-pooling bias, "
    "three heads (spatial policy 9x9x139, W/D/L value, score lead)",
)
SE_RESNET_SMALL = _spec(
    "se_resnet_small",
    {"num_blocks": 10, "channels": 128, "se_ratio": 1 / 8, "bottleneck": 64},
    "The SE-ResNet at 10 blocks x 128 channels (SE 1/8, bottleneck 64)",
)
SE_RESNET_TINY = _spec(
    "se_resnet_tiny",
    {"num_blocks": 2, "channels": 16, "se_ratio": 1 / 4, "bottleneck": 8},
    "Two 16-channel SE-ResNet blocks: every code path, fast enough for unit tests",
)
