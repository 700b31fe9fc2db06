"""The fused squeeze-excitation operator, ``keisei::squeeze_excite``: the composite's outputs and
gradients, torch.library's own checks, one opaque op under torch.compile, and the Triton kernel
under Triton's interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import keisei_models
from keisei_models import fused_se
from keisei_models.fused_se import FusedKernelUnavailableError, squeeze_excite, squeeze_excite_reference

#: Set to ``required`` where triton was installed, so the interpreter test cannot quietly skip.
TRITON_ENV = "KEISEI_PERF_TRITON"


def _operands(scale_shift: bool, batch: int = 3, channels: int = 8, hidden: int = 3, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    outputs = 2 * channels if scale_shift else channels
    return (
        torch.randn(batch, channels, 5, 5, generator=g),
        torch.randn(hidden, channels, generator=g),
        torch.randn(hidden, generator=g),
        torch.randn(outputs, hidden, generator=g),
        torch.randn(outputs, generator=g),
    )


@pytest.mark.parametrize("scale_shift", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
def test_the_operator_computes_the_composite_block(scale_shift: bool, batch: int) -> None:
    args = _operands(scale_shift, batch=batch)
    torch.testing.assert_close(
        squeeze_excite(*args, scale_shift), squeeze_excite_reference(*args, scale_shift)
    )


def test_a_channels_last_input_gives_the_same_values() -> None:
    x, *weights = _operands(False)
    expected = squeeze_excite_reference(x, *weights)
    torch.testing.assert_close(
        squeeze_excite(x.to(memory_format=torch.channels_last), *weights, False), expected
    )


@pytest.mark.parametrize("scale_shift", [False, True])
def test_gradients_are_exact_in_float64(scale_shift: bool) -> None:
    args = [t.double().requires_grad_() for t in _operands(scale_shift)]
    assert torch.autograd.gradcheck(lambda *a: squeeze_excite(*a, scale_shift), args)


@pytest.mark.parametrize("scale_shift", [False, True])
def test_torch_library_opcheck_passes(scale_shift: bool) -> None:
    x, w1, b1, w2, b2 = _operands(scale_shift)
    torch.library.opcheck(squeeze_excite, (x.requires_grad_(), w1.requires_grad_(), b1, w2, b2, scale_shift))


@pytest.mark.parametrize(
    ("arch", "se_class"),
    [("resnet_tower_tiny", "FusedSqueezeExcitation"), ("se_resnet_tiny", "FusedScaleShiftSE")],
)
def test_fused_models_match_plain_forward_and_backward(arch: str, se_class: str) -> None:
    kwargs = {"se_ratio": 0.25} if arch == "resnet_tower_tiny" else {}
    plain = keisei_models.build(arch, seed=1, **kwargs).train()
    fused = keisei_models.build(arch, seed=1, se_impl="fused", **kwargs).train()
    fused.load_state_dict(plain.state_dict())
    assert {type(m).__name__ for m in fused.modules()} >= {se_class}
    x = torch.randn(4, *keisei_models.get(arch).input_shape)
    outputs = []
    for model in (plain, fused):
        out = model(x)
        first = out[0] if isinstance(out, tuple) else out.policy_logits
        first.square().mean().backward()
        outputs.append(
            (first.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    torch.testing.assert_close(outputs[1][0], outputs[0][0])
    assert outputs[1][1].keys() == outputs[0][1].keys()
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(
            outputs[1][1][name], grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("arch", ["resnet_tower_tiny", "se_resnet_tiny"])
def test_compiling_a_fused_model_gives_one_graph_and_no_breaks(arch: str) -> None:
    kwargs = {"se_ratio": 0.25} if arch == "resnet_tower_tiny" else {}
    model = keisei_models.build(arch, seed=0, se_impl="fused", **kwargs).eval()
    x = torch.randn(2, *keisei_models.get(arch).input_shape)
    explanation = torch._dynamo.explain(model)(x)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    ops = [str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert any("keisei.squeeze_excite" in op for op in ops), ops


def test_a_compiled_training_step_through_the_operator_matches_eager() -> None:
    model = keisei_models.build("se_resnet_tiny", seed=2, se_impl="fused").train()
    x = torch.randn(3, *keisei_models.get("se_resnet_tiny").input_shape)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (model, compiled):
        model.zero_grad()
        out = fn(x)
        (
            out.policy_logits.square().mean() + out.value_logits.square().mean() + out.score_lead.mean()
        ).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for eager, comp in zip(*grads, strict=True):
        torch.testing.assert_close(comp, eager)


def test_a_kernel_that_cannot_build_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    def no_compiler(**_: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with pytest.raises(FusedKernelUnavailableError, match=r"CPU kernel .* C\+\+ compiler.*Ninja is required"):
        fused_se.build_cpu_kernel.__wrapped__()


def test_the_triton_kernel_matches_the_composite_under_the_interpreter() -> None:
    """The CUDA kernel's arithmetic, run on CPU tensors by ``TRITON_INTERPRET=1`` in a fresh
    process (the interpreter is chosen when triton is imported)."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        if os.environ.get(TRITON_ENV) == "required":
            pytest.fail(f"triton is missing but {TRITON_ENV}=required: {exc}")
        pytest.skip(f"triton is not installed ({exc}): the Triton kernel is not checked on this machine")
    script = textwrap.dedent(
        """
        import torch
        from keisei_models._se_triton import launch
        from keisei_models.fused_se import squeeze_excite_reference
        for scale_shift in (False, True):
            for batch, channels, hidden, side in ((1, 16, 4, 9), (3, 24, 5, 7)):
                g = torch.Generator().manual_seed(batch)
                outputs = 2 * channels if scale_shift else channels
                shapes = ((batch, channels, side, side), (hidden, channels), (hidden,))
                shapes += ((outputs, hidden), (outputs,))
                args = [torch.randn(*shape, generator=g) for shape in shapes]
                expected = squeeze_excite_reference(*args, scale_shift)
                torch.testing.assert_close(launch(*args, scale_shift), expected)
        print("triton kernel matches")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "triton kernel matches" in done.stdout
