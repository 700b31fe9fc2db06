"""Compiled-vs-eager output comparison: structure, dtypes, tolerances, the float64 rule, NaNs."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import NamedTuple

import torch

from pytest_keisei_perf.accuracy import (
    compare_outputs,
    cosine_similarity,
    flatten_outputs,
    snapshot,
    to_float64,
)


class Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


@dataclasses.dataclass
class Out:
    pair: Pair
    meta: dict[str, object]


def test_flatten_names_every_leaf() -> None:
    out = Out(Pair(torch.ones(1), torch.zeros(1)), {"k": [torch.ones(2), 3]})
    assert [path for path, _ in flatten_outputs(out)] == [
        "output.pair.a",
        "output.pair.b",
        "output.meta['k'][0]",
        "output.meta['k'][1]",
    ]


def test_identical_outputs_pass() -> None:
    x = torch.randn(3, 4)
    result = compare_outputs((x, {"v": x.sum()}), (x.clone(), {"v": x.sum()}))
    assert result.passed
    assert result.max_abs_err == 0.0


def test_small_reordering_error_passes_with_default_float32_tolerance() -> None:
    logits = torch.tensor([1e-7, 3.0, -2.0])
    result = compare_outputs(logits + 5e-7, logits)
    assert result.passed  # rel error on the near-zero logit is 5, but atol=1e-5 covers it
    assert result.max_rel_err > 1.0


def test_tolerance_override_and_failure_message() -> None:
    expected = torch.zeros(2, 2)
    result = compare_outputs(expected + 1e-3, expected, atol=1e-4)
    assert not result.passed
    assert result.message.startswith("output: max abs error 0.001")
    assert "atol=0.0001" in result.message
    assert result.worst_leaf == "output"


def test_structure_dtype_and_shape_mismatches_are_named() -> None:
    x = torch.ones(2)
    assert "structure differs" in compare_outputs((x,), [x]).message
    assert compare_outputs((x, x), (x,)).passed is False
    assert (
        "output[1]: dtype torch.float64 in compiled vs torch.float32 in eager"
        in compare_outputs((x, x.double()), (x, x)).message
    )
    assert "shape (3,) in compiled vs (2,) in eager" in compare_outputs(torch.ones(3), x).message


def test_integer_leaves_must_match_exactly() -> None:
    assert not compare_outputs(torch.tensor([1, 2]), torch.tensor([1, 3])).passed
    assert compare_outputs(torch.tensor([1, 2]), torch.tensor([1, 2])).passed


def test_nan_pattern_must_match() -> None:
    eager = torch.tensor([1.0, float("nan")])
    assert compare_outputs(eager.clone(), eager).passed
    result = compare_outputs(torch.tensor([float("nan"), float("nan")]), eager)
    assert not result.passed
    assert "non-finite values differ: compiled has 2 NaN" in result.message


def test_nondeterministic_eager_skips_the_check_with_a_reason() -> None:
    result = compare_outputs(torch.ones(2), torch.ones(2), eager_again=torch.zeros(2))
    assert not result.passed  # a check that did not run is not a pass
    assert not result.checked
    assert not result.mismatched
    assert result.skipped_reason is not None
    assert "eager is not deterministic" in result.skipped_reason


def test_float64_rule_accepts_compiled_as_close_to_fp64_as_eager() -> None:
    truth = torch.linspace(-1, 1, 100, dtype=torch.float64)
    noise = torch.randn(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eager = (truth + 1e-4 * noise).float()
    compiled = (truth - 1e-4 * noise).float()  # fails allclose(atol=1e-5) but is as accurate
    assert not compare_outputs(compiled, eager).passed
    result = compare_outputs(compiled, eager, reference=lambda: truth)
    assert result.passed
    assert result.used_fp64_reference
    worse = (truth + 1e-2 * noise).float()
    assert not compare_outputs(worse, eager, reference=lambda: truth).passed


def test_float64_reference_failure_is_reported_not_hidden() -> None:
    def broken() -> None:
        raise RuntimeError("no double kernel")

    result = compare_outputs(torch.ones(2) + 1, torch.ones(2), reference=broken)
    assert not result.passed
    assert "no float64 reference: RuntimeError: no double kernel" in result.message


def test_to_float64_and_snapshot_rebuild_containers() -> None:
    out = Out(Pair(torch.ones(1), torch.ones(1, dtype=torch.int64)), {"k": [torch.ones(1)]})
    doubled = to_float64(out)
    assert doubled.pair.a.dtype == torch.float64
    assert doubled.pair.b.dtype == torch.int64
    assert isinstance(doubled.pair, Pair)
    copy = snapshot(out)
    out.pair.a.add_(1)
    assert math.isclose(float(copy.pair.a), 1.0)


def test_float64_reference_covers_bound_methods_of_modules() -> None:
    """On CUDA, get_action_and_value's value differed from eager by 1.2e-5 under compile (TF32):
    the float64 rule must be available for a module's methods, not only for the module."""
    import keisei_models
    from pytest_keisei_perf.runner import _float64_reference

    model = keisei_models.build("resnet_tower_tiny").eval()
    (obs,) = keisei_models.example_inputs("resnet_tower_tiny", batch_size=2)
    mask = keisei_models.example_legal_mask("resnet_tower_tiny", batch_size=2)
    thunk = _float64_reference(model.get_action_and_value, (obs, mask, True), {})
    assert thunk is not None
    _action, log_prob, value = thunk()
    assert value.dtype == torch.float64
    assert log_prob.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32  # the benchmarked model is untouched
    with torch.no_grad():
        _, _, value32 = model.get_action_and_value(obs, mask, True)
    torch.testing.assert_close(value, value32.double(), rtol=1e-4, atol=1e-5)
    assert _float64_reference(lambda x: x, (obs,), {}) is None


def test_mixed_precision_passes_on_cosine_similarity_and_names_it_when_it_fails() -> None:
    """The AMP rule of PyTorch's harness: bf16-order noise fails elementwise tolerances but keeps
    the direction (cosine >= 0.99); a wrong gradient (half its entries flipped) does not. A
    one-element leaf keeps the elementwise rule, where a cosine would say only its sign."""
    g = torch.Generator().manual_seed(3)
    eager = torch.randn(4096, generator=g)
    noisy = eager * (1 + 0.05 * torch.randn(4096, generator=g))  # up to ~20% off elementwise
    assert not compare_outputs({"grad": noisy}, {"grad": eager}, rtol=1.6e-2, atol=1e-2).passed
    ok = compare_outputs({"grad": noisy}, {"grad": eager}, rtol=1.6e-2, atol=1e-2, cosine=True)
    assert ok.passed, ok.message
    flipped = eager.clone()
    flipped[::2] *= -1
    bad = compare_outputs({"grad": flipped}, {"grad": eager}, rtol=1.6e-2, atol=1e-2, cosine=True)
    assert not bad.passed
    assert "output['grad']: " in bad.message
    assert re.search(r"cosine similarity to eager is -?0\.0\d+ < 0.99", bad.message)
    loss = compare_outputs(torch.tensor([2.0]), torch.tensor([1.0]), rtol=1.6e-2, atol=1e-2, cosine=True)
    assert not loss.passed  # same direction, twice the value
    assert cosine_similarity(torch.zeros(3), torch.zeros(3)) == 1.0
