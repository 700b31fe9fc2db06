"""Keisei's SE-ResNet: shapes of the three heads, masks, gradients, autocast, BatchNorm modes,
the registry entries and the training batches."""

from __future__ import annotations

import pytest
import torch

import keisei_models
from keisei_models import ActorCriticProtocol
from keisei_models.se_resnet import (
    SE_RESNET_SPATIAL_ACTIONS,
    SEResNet,
    SEResNetBlock,
    SEResNetOutput,
    example_training_batch,
    training_loss,
)


@pytest.fixture
def tiny() -> SEResNet:
    model = keisei_models.build("se_resnet_tiny")
    assert isinstance(model, SEResNet)
    return model


def test_three_heads_have_keiseis_shapes(tiny: SEResNet) -> None:
    out = tiny.eval()(*keisei_models.example_inputs("se_resnet_tiny", 3))
    assert isinstance(out, SEResNetOutput)
    assert out.policy_logits.shape == (3, 9, 9, 139)
    assert out.policy_logits.flatten(1).shape[1] == SE_RESNET_SPATIAL_ACTIONS == 11_259
    assert out.value_logits.shape == (3, 3)
    assert out.score_lead.shape == (3, 1)
    assert keisei_models.get("se_resnet").num_actions == 11_259
    assert keisei_models.get("se_resnet").input_shape == (50, 9, 9)


def test_full_size_networks_are_built_as_described() -> None:
    """The 40x256 network on the meta device: its structure and output shapes, no memory."""
    with torch.device("meta"):
        full = keisei_models.build("se_resnet")
        out = full(torch.empty(2, 50, 9, 9))
    assert isinstance(full, SEResNet)
    assert len(full.blocks) == 40
    block = full.blocks[0]
    assert isinstance(block, SEResNetBlock)
    assert block.conv1.out_channels == 256
    assert block.conv1.bias is None  # BN follows
    assert block.se.fc1.out_features == 16  # 256 / 16
    assert block.pool_bias.fc1.in_features == 3 * 256  # mean, max, std
    assert block.pool_bias.fc1.out_features == 128
    assert out.policy_logits.shape == (2, 9, 9, 139)
    small = keisei_models.build("se_resnet_small")
    assert isinstance(small, SEResNet)
    assert len(small.blocks) == 10
    assert small.blocks[0].se.fc1.out_features == 16  # 128 / 8
    assert small.blocks[0].pool_bias.fc1.out_features == 64


def test_the_block_adds_the_global_pooling_bias_of_its_input() -> None:
    torch.manual_seed(0)
    block = SEResNetBlock(4, se_ratio=0.5, bottleneck=3).eval()
    x = torch.randn(2, 4, 9, 9)
    flat = x.flatten(2)
    std = (flat.var(-1, correction=0) + 1e-5).sqrt()  # population std, kept differentiable at 0
    pooled = torch.cat([flat.mean(-1), flat.amax(-1), std], dim=1)
    bias = block.pool_bias.fc2(torch.relu(block.pool_bias.fc1(pooled)))[:, :, None, None]
    inner = torch.relu(block.bn1(block.conv1(x))) + bias
    inner = block.bn2(block.conv2(inner))
    scale, shift = block.se.fc2(torch.relu(block.se.fc1(inner.mean(dim=(2, 3))))).chunk(2, dim=1)
    expected = torch.relu(inner * torch.sigmoid(scale)[:, :, None, None] + shift[:, :, None, None] + x)
    torch.testing.assert_close(block(x), expected)


def test_legal_masks_hold_in_the_actor_critic_methods(tiny: SEResNet) -> None:
    assert isinstance(tiny, ActorCriticProtocol)
    batch = example_training_batch(4, legal_moves=5)
    action, log_prob, value = tiny.eval().get_action_and_value(batch.observations, batch.legal_mask)
    assert bool(batch.legal_mask[torch.arange(4), action].all())
    assert torch.isfinite(log_prob).all()
    assert value.shape == (4,)
    assert bool((value.abs() <= 1).all())  # P(win) - P(loss)
    log_probs, entropy, _ = tiny.evaluate_actions(batch.observations, action, batch.legal_mask)
    torch.testing.assert_close(log_probs, log_prob)
    assert bool((entropy <= torch.log(torch.tensor(5.0)) + 1e-5).all())  # 5 legal moves at most


def test_the_training_loss_reaches_every_parameter(tiny: SEResNet) -> None:
    batch = example_training_batch(4)
    assert torch.allclose(batch.target_policy.sum(1), torch.ones(4))
    assert bool((batch.target_policy[~batch.legal_mask] == 0).all())
    loss = training_loss(tiny.train()(batch.observations), *batch.tensors[1:])
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in tiny.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert sum(float(p.grad.abs().sum()) for p in tiny.parameters() if p.grad is not None) > 0


def test_a_constant_plane_has_a_finite_gradient() -> None:
    """The std of a constant plane is 0, and sqrt's gradient there is infinite: the pooled std
    must keep the training step finite (compiled bfloat16 steps hit exact zeros)."""
    block = SEResNetBlock(4, se_ratio=0.5, bottleneck=3)
    x = torch.ones(2, 4, 9, 9, requires_grad=True)
    block(x).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)


def test_batchnorm_follows_the_mode_it_is_given(tiny: SEResNet) -> None:
    (x,) = keisei_models.example_inputs("se_resnet_tiny", 4)
    running = tiny.stem[1].running_mean.clone()
    tiny.train()(x)
    assert not torch.equal(running, tiny.stem[1].running_mean)  # train: statistics update
    updated = tiny.stem[1].running_mean.clone()
    tiny.eval()(x)
    assert torch.equal(updated, tiny.stem[1].running_mean)  # eval: frozen


def test_internal_autocast_runs_in_bfloat16_and_returns_float32() -> None:
    plain = keisei_models.build("se_resnet_tiny").eval()
    amp = keisei_models.build("se_resnet_tiny", autocast_dtype=torch.bfloat16).eval()
    (x,) = keisei_models.example_inputs("se_resnet_tiny", 2)
    a, b = plain(x), amp(x)
    assert b.policy_logits.dtype == torch.float32
    assert not torch.equal(a.policy_logits, b.policy_logits)  # really computed in bfloat16
    torch.testing.assert_close(b.policy_logits, a.policy_logits, rtol=0.1, atol=0.1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_blocks": -1}, "num_blocks must be an int >= 0"),
        ({"channels": 0}, "channels must be an int >= 1"),
        ({"se_ratio": 0.0}, "se_ratio must be in"),
        ({"autocast_dtype": torch.float64}, "autocast_dtype must be None"),
    ],
)
def test_bad_sizes_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SEResNet(**overrides)  # type: ignore[arg-type]


def test_training_batches_are_deterministic_and_checked() -> None:
    a, b = example_training_batch(3, seed=4), example_training_batch(3, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors, strict=True))
    assert a.observations.shape == (3, 50, 9, 9)
    assert a.legal_mask.shape == (3, 11_259)
    assert a.legal_mask.sum(1).tolist() == [80, 80, 80]
    assert a.value_class.dtype == torch.int64
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        example_training_batch(0)
    with pytest.raises(ValueError, match="legal_moves must be in"):
        example_training_batch(2, legal_moves=0)
