"""Keisei's ResNet tower: shapes, parameter counts, masking, protocol, single-graph compile."""

from __future__ import annotations

import copy

import pytest
import torch

import keisei_models
from keisei_models import NUM_ACTIONS, ActorCriticProtocol, apply_legal_mask
from keisei_models.resnet_tower import ActorCriticResTower, ResidualBlock


def _param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tiny() -> ActorCriticResTower:
    model = keisei_models.build("resnet_tower_tiny")
    assert isinstance(model, ActorCriticResTower)
    return model.eval()


def test_default_tower_matches_keisei() -> None:
    model = keisei_models.build("resnet_tower")
    # Keisei's ActorCriticResTower(46, 13527, depth 9, width 256, se_ratio 0.25) has 13,241,300.
    assert _param_count(model) == 13_241_300
    assert len(model.res_blocks) == 9
    block = model.res_blocks[0]
    assert block.se is not None
    assert block.se.fc1.out_channels == 64


def test_tiny_tower_has_one_block_without_se(tiny: ActorCriticResTower) -> None:
    assert len(tiny.res_blocks) == 1
    assert tiny.res_blocks[0].se is None
    assert tiny.stem[0].out_channels == 16
    # stem 46*16*9+16, BN 32, block 2*(16*16*9+16)+64, heads dominate: 162*13527+13527.
    assert _param_count(tiny) == 2_216_516


@pytest.mark.parametrize("batch", [1, 5])
def test_forward_shapes(tiny: ActorCriticResTower, batch: int) -> None:
    (x,) = keisei_models.example_inputs("resnet_tower_tiny", batch)
    logits, value = tiny(x)
    assert logits.shape == (batch, NUM_ACTIONS)
    assert value.shape == (batch,)
    assert torch.isfinite(logits).all()
    assert torch.isfinite(value).all()


def test_se_block_gates_channels() -> None:
    """Shut gate: the residual branch is zeroed, the block is relu(skip). Open gate: the block is
    the same block without SE. In between, each channel is scaled by its own gate."""
    torch.manual_seed(0)
    block = ResidualBlock(8, se_ratio=0.25).eval()
    plain = copy.deepcopy(block)
    plain.se = None
    h = torch.randn(2, 8, 9, 9)
    assert block.se is not None
    with torch.no_grad():
        block.se.fc2.bias.fill_(-1e4)
        torch.testing.assert_close(block(h), torch.relu(h))
        block.se.fc2.bias.fill_(1e4)
        torch.testing.assert_close(block(h), plain(h))
        block.se.fc2.weight.zero_()
        block.se.fc2.bias.copy_(torch.linspace(-3, 3, 8))  # gate = sigmoid(bias), per channel
        branch = plain.bn2(plain.conv2(torch.relu(plain.bn1(plain.conv1(h)))))
        gate = torch.sigmoid(torch.linspace(-3, 3, 8)).view(1, 8, 1, 1)
        torch.testing.assert_close(block(h), torch.relu(branch * gate + h))


def test_invalid_constructor_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="tower_width must be >= 1, got 0"):
        ActorCriticResTower(tower_width=0)
    with pytest.raises(ValueError, match="se_ratio"):
        ActorCriticResTower(se_ratio=2.0)


def test_builtins_satisfy_the_protocol(tiny: ActorCriticResTower) -> None:
    assert isinstance(tiny, ActorCriticProtocol)
    assert not isinstance(object(), ActorCriticProtocol)


def test_actions_respect_the_legal_mask(tiny: ActorCriticResTower) -> None:
    (obs,) = keisei_models.example_inputs("resnet_tower_tiny", 8)
    mask = keisei_models.example_legal_mask("resnet_tower_tiny", 8, legal_moves=3)
    torch.manual_seed(0)
    for _ in range(20):
        action, log_prob, value = tiny.get_action_and_value(obs, mask)
        assert mask[torch.arange(8), action].all()
        assert (log_prob <= 0).all()
        assert torch.isfinite(log_prob).all()
        assert value.shape == (8,)


def test_deterministic_action_is_the_best_legal_one(tiny: ActorCriticResTower) -> None:
    (obs,) = keisei_models.example_inputs("resnet_tower_tiny", 4)
    mask = keisei_models.example_legal_mask("resnet_tower_tiny", 4, legal_moves=5)
    logits, _ = tiny(obs)
    expected = logits.masked_fill(~mask, float("-inf")).argmax(dim=-1)
    action, _, _ = tiny.get_action_and_value(obs, mask, deterministic=True)
    assert torch.equal(action, expected)
    unmasked, _, _ = tiny.get_action_and_value(obs, deterministic=True)
    assert torch.equal(unmasked, logits.argmax(dim=-1))


def test_evaluate_actions_matches_masked_softmax(tiny: ActorCriticResTower) -> None:
    (obs,) = keisei_models.example_inputs("resnet_tower_tiny", 4)
    mask = keisei_models.example_legal_mask("resnet_tower_tiny", 4, legal_moves=7)
    actions = mask.float().argmax(dim=-1)  # first legal action in each row
    log_probs, entropy, value = tiny.evaluate_actions(obs, actions, mask)
    logits, expected_value = tiny(obs)
    masked = logits.masked_fill(~mask, float("-inf")).log_softmax(dim=-1)
    torch.testing.assert_close(log_probs, masked.gather(1, actions[:, None]).squeeze(1))
    probs = masked.exp()
    expected_entropy = -(probs * masked.nan_to_num(neginf=0.0)).sum(dim=-1)
    torch.testing.assert_close(entropy, expected_entropy)
    torch.testing.assert_close(value, expected_value)
    assert (entropy <= torch.log(torch.tensor(7.0)) + 1e-5).all()


def test_all_false_mask_is_a_clear_error(tiny: ActorCriticResTower) -> None:
    (obs,) = keisei_models.example_inputs("resnet_tower_tiny", 3)
    mask = keisei_models.example_legal_mask("resnet_tower_tiny", 3)
    mask[1] = False
    with pytest.raises(ValueError, match=r"allows no action in batch row\(s\) \[1\]"):
        tiny.get_action_and_value(obs, mask)
    with pytest.raises(ValueError, match="no action"):
        tiny.evaluate_actions(obs, torch.zeros(3, dtype=torch.long), mask)


def test_mask_shape_and_dtype_are_checked() -> None:
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="bool tensor"):
        apply_legal_mask(logits, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"shape \(2, 4\) does not match policy logits shape \(2, 5\)"):
        apply_legal_mask(logits, torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("se_ratio", [None, 0.25])
def test_forward_is_one_graph_without_breaks(se_ratio: float | None) -> None:
    model = keisei_models.build("resnet_tower_tiny", se_ratio=se_ratio).eval()
    (x,) = keisei_models.example_inputs("resnet_tower_tiny", 2)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_count == 1
    assert explanation.graph_break_count == 0
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
    torch._dynamo.reset()


def test_fused_se_gives_the_plain_outputs() -> None:
    plain = keisei_models.build("resnet_tower_tiny", se_ratio=0.25, tower_depth=2, seed=3).eval()
    fused = keisei_models.build(
        "resnet_tower_tiny", se_ratio=0.25, tower_depth=2, seed=3, se_impl="fused"
    ).eval()
    assert type(fused.res_blocks[0].se).__name__ == "FusedSqueezeExcitation"
    fused.load_state_dict(plain.state_dict())  # one layout: weights move between the two
    (x,) = keisei_models.example_inputs("resnet_tower_tiny", 4, seed=1)
    with torch.no_grad():
        for a, b in zip(plain(x), fused(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1.3e-6, atol=1e-5)
    with pytest.raises(ValueError, match="se_impl must be one of plain, fused, got 'fast'"):
        keisei_models.build("resnet_tower_tiny", se_impl="fast")
