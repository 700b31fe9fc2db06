"""Keisei's actor-critic ResNet tower with optional squeeze-excitation blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .constants import BOARD_SIZE, INPUT_PLANES, NUM_ACTIONS
from .fused_se import squeeze_excite
from .protocol import ActorCriticBase
from .registry import ArchitectureSpec

__all__ = [
    "RESNET_TOWER",
    "RESNET_TOWER_TINY",
    "SE_IMPLEMENTATIONS",
    "ActorCriticResTower",
    "FusedSqueezeExcitation",
    "ResidualBlock",
    "SqueezeExcitation",
]

#: Both heads squeeze the tower to this many channels before their linear layer.
_HEAD_CHANNELS = 2


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, bottleneck 1x1 convs, sigmoid gate."""

    def __init__(self, channels: int, se_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(channels * se_ratio))
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class FusedSqueezeExcitation(SqueezeExcitation):
    """The same function and parameters as :class:`SqueezeExcitation`, as one operator.

    ``keisei::squeeze_excite`` (:mod:`keisei_models.fused_se`) pools, runs both 1x1 layers, the
    sigmoid and the scale in one pass per sample. The weights are the plain block's, so a state
    dict loads into either and both give the same outputs within float32 tolerance.
    """

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = squeeze_excite(
            x, self.fc1.weight.flatten(1), self.fc1.bias, self.fc2.weight.flatten(1), self.fc2.bias, False
        )
        return out


#: ``se_impl`` values: the squeeze-excitation implementation of every residual block.
SE_IMPLEMENTATIONS: dict[str, type[SqueezeExcitation]] = {
    "plain": SqueezeExcitation,
    "fused": FusedSqueezeExcitation,
}


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, optional SE, skip add, ReLU."""

    def __init__(self, channels: int, se_ratio: float | None = None, se_impl: str = "plain") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SE_IMPLEMENTATIONS[se_impl](channels, se_ratio) if se_ratio else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return F.relu(out + x)


class ActorCriticResTower(ActorCriticBase):
    """Stem, a tower of residual blocks, then a policy head and a value head.

    ``forward`` returns ``(policy_logits [B, num_actions_total], value [B])`` and is a single
    graph under ``torch.compile(fullgraph=True)``.
    """

    def __init__(
        self,
        input_channels: int = INPUT_PLANES,
        num_actions_total: int = NUM_ACTIONS,
        tower_depth: int = 9,
        tower_width: int = 256,
        se_ratio: float | None = 0.25,
        board_size: int = BOARD_SIZE,
        se_impl: str = "plain",
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_channels", input_channels),
            ("num_actions_total", num_actions_total),
            ("tower_width", tower_width),
            ("board_size", board_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if tower_depth < 0:
            raise ValueError(f"tower_depth must be >= 0, got {tower_depth}")
        if se_ratio is not None and not 0 <= se_ratio <= 1:
            raise ValueError(f"se_ratio must be in [0, 1] or None, got {se_ratio}")
        if se_impl not in SE_IMPLEMENTATIONS:
            raise ValueError(f"se_impl must be one of {', '.join(SE_IMPLEMENTATIONS)}, got {se_impl!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(input_channels, tower_width, kernel_size=3, padding=1),
            nn.BatchNorm2d(tower_width),
            nn.ReLU(inplace=True),
        )
        self.res_blocks = nn.Sequential(
            *(ResidualBlock(tower_width, se_ratio, se_impl) for _ in range(tower_depth))
        )
        flat = _HEAD_CHANNELS * board_size * board_size
        self.policy_head = nn.Sequential(
            nn.Conv2d(tower_width, _HEAD_CHANNELS, kernel_size=1),
            nn.BatchNorm2d(_HEAD_CHANNELS),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(flat, num_actions_total),
        )
        self.value_head = nn.Sequential(
            nn.Conv2d(tower_width, _HEAD_CHANNELS, kernel_size=1),
            nn.BatchNorm2d(_HEAD_CHANNELS),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(flat, 1),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.res_blocks(self.stem(x))
        return self.policy_head(features), self.value_head(features).squeeze(-1)


RESNET_TOWER = ArchitectureSpec(
    name="resnet_tower",
    factory=ActorCriticResTower,
    defaults={"tower_depth": 9, "tower_width": 256, "se_ratio": 0.25},
    description="Keisei's default actor-critic: 9 residual blocks x 256 channels, SE ratio 0.25",
)

RESNET_TOWER_TINY = ArchitectureSpec(
    name="resnet_tower_tiny",
    factory=ActorCriticResTower,
    defaults={"tower_depth": 1, "tower_width": 16, "se_ratio": None},
    description="One 16-channel block without SE: the same code paths, fast enough for unit tests",
)
