"""Compiled outputs against eager, the way PyTorch's own benchmark harness does it.

First eager must agree with itself (otherwise no tolerance means anything). Then each output
leaf must match: same structure, dtype and shape; then ``allclose``; a leaf that fails it still
passes if the compiled result is about as close to a float64 reference as eager is (RMSE rule),
because compiled code legitimately reorders float arithmetic. A pure ``rtol`` check is wrong
here: near-zero logits showed relative errors up to 0.1 with absolute errors of 5e-7.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import torch
from torch import Tensor

from .result import AccuracyResult

__all__ = [
    "COSINE_MIN",
    "DEFAULT_TOLERANCES",
    "OutputMismatch",
    "compare_outputs",
    "flatten_outputs",
    "map_tensors",
    "snapshot",
    "to_float64",
]

#: (rtol, atol) per dtype; float32's atol covers compiled-vs-eager reordering (~5e-7 seen here).
DEFAULT_TOLERANCES: Final[Mapping[torch.dtype, tuple[float, float]]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1.6e-2, 1e-2),
}
#: PyTorch's harness allows compiled RMSE vs fp64 up to this multiple of eager's (3 for halves).
_RMSE_MULTIPLIER: Final = {torch.float16: 3.0, torch.bfloat16: 3.0}
#: Under mixed precision (AMP), PyTorch's harness accepts a leaf whose cosine similarity to
#: eager is at least this (``same(..., cos_similarity=True)``): elementwise tolerances fail on
#: values computed in bf16/fp16 in another order, while a wrong result points elsewhere.
COSINE_MIN: Final = 0.99


class OutputMismatch(AssertionError):
    """The outputs differ in structure, type, dtype or shape; the message names the leaf."""


def flatten_outputs(value: Any, path: str = "output") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` for tensors and scalars nested in tuples, lists, dicts, dataclasses."""
    if isinstance(value, Tensor):
        yield path, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from flatten_outputs(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple
        for name in value._fields:
            yield from flatten_outputs(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from flatten_outputs(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key in value:
            yield from flatten_outputs(value[key], f"{path}[{key!r}]")
    else:
        yield path, value


def _structure(value: Any) -> Any:
    """A comparable skeleton: container types, lengths, keys and field names, no data."""
    if isinstance(value, Tensor):
        return "tensor"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__qualname__,
            tuple((f.name, _structure(getattr(value, f.name))) for f in dataclasses.fields(value)),
        )
    if isinstance(value, (tuple, list)):
        return (type(value).__qualname__, tuple(_structure(v) for v in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple((repr(k), _structure(v)) for k, v in value.items()))
    return type(value).__qualname__


def map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    """``value`` with ``fn`` applied to every tensor, containers and dataclasses rebuilt."""
    if isinstance(value, Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: map_tensors(fn, getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(fn, v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(fn, v) for v in value)
    if isinstance(value, Mapping):
        return {k: map_tensors(fn, v) for k, v in value.items()}
    return value


def to_float64(value: Any) -> Any:
    """``value`` with every floating tensor converted to float64."""
    return map_tensors(lambda t: t.double() if t.is_floating_point() else t, value)


def snapshot(value: Any) -> Any:
    """Detached copies of every tensor: CUDA-graph outputs are overwritten by the next call."""
    return map_tensors(lambda t: t.detach().clone(), value)


def cosine_similarity(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two tensors as flat float64 vectors (1.0 for two zero vectors)."""
    x, y = a.detach().flatten().double(), b.detach().flatten().double()
    if not bool(x.any()) and not bool(y.any()):
        return 1.0
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0, eps=1e-12))


def _rmse(a: Tensor, b: Tensor) -> float:
    return float(torch.sqrt(torch.mean(torch.square(a.double() - b.double()))))


class _LazyReference:
    """The float64 output, computed at most once and only if some leaf needs it."""

    def __init__(self, compute: Callable[[], Any] | None) -> None:
        self._compute = compute
        self._leaves: dict[str, Any] | None = None
        self.error: str | None = None

    def leaf(self, path: str) -> Any:
        if self._leaves is None:
            value = None
            if self._compute is not None:
                try:
                    value = self._compute()
                except Exception as exc:  # a model that cannot run in float64 lacks the RMSE rule
                    self.error = f"{type(exc).__name__}: {exc}"
            self._leaves = dict(flatten_outputs(value)) if value is not None else {}
        return self._leaves.get(path)


@dataclass
class _Worst:
    abs_err: float = 0.0
    rel_err: float = 0.0
    leaf: str = ""


def _check_scalar(
    path: str, actual: Any, expected: Any, rtol: float | None, atol: float | None
) -> str | None:
    """A non-tensor leaf: floats within the tolerances, anything else equal."""
    if isinstance(expected, float) and isinstance(actual, float):
        ok = math.isclose(actual, expected, rel_tol=rtol or 1e-6, abs_tol=atol or 1e-6)
    else:
        ok = actual == expected
    return None if ok else f"{path}: compiled {actual!r} != eager {expected!r}"


def _check_leaf(
    path: str,
    actual: Any,
    expected: Any,
    references: _LazyReference,
    rtol: float | None,
    atol: float | None,
    worst: _Worst,
    cosine: bool = False,
) -> tuple[str | None, float, float, bool]:
    """Problem text (None when the leaf matches), the tolerance used, and whether fp64 was used.

    With ``cosine`` (mixed precision), a leaf of more than one element that fails ``allclose``
    passes at a cosine similarity of at least :data:`COSINE_MIN` to eager; a one-element leaf
    (a loss) keeps the elementwise rule, where a cosine says only its sign."""
    if not isinstance(expected, Tensor):
        return _check_scalar(path, actual, expected, rtol, atol), rtol or 0.0, atol or 0.0, False
    if actual.dtype != expected.dtype:
        raise OutputMismatch(f"{path}: dtype {actual.dtype} in compiled vs {expected.dtype} in eager")
    if actual.shape != expected.shape:
        raise OutputMismatch(
            f"{path}: shape {tuple(actual.shape)} in compiled vs {tuple(expected.shape)} in eager"
        )
    default_rtol, default_atol = DEFAULT_TOLERANCES.get(expected.dtype, (0.0, 0.0))
    leaf_rtol = default_rtol if rtol is None else rtol
    leaf_atol = default_atol if atol is None else atol
    a, e = actual.detach().cpu(), expected.detach().cpu()
    if not e.is_floating_point() and not e.is_complex():
        equal = torch.equal(a, e)
        return (
            (None if equal else f"{path}: compiled differs from eager (exact dtype {e.dtype})"),
            leaf_rtol,
            leaf_atol,
            False,
        )
    a_bad, e_bad = ~torch.isfinite(a), ~torch.isfinite(e)
    if not torch.equal(a_bad, e_bad) or not torch.equal(a[a_bad].nan_to_num(), e[e_bad].nan_to_num()):
        return (
            f"{path}: non-finite values differ: compiled has {int(a.isnan().sum())} NaN and "
            f"{int(a.isinf().sum())} Inf, eager has {int(e.isnan().sum())} NaN and "
            f"{int(e.isinf().sum())} Inf",
            leaf_rtol,
            leaf_atol,
            False,
        )
    finite = ~e_bad
    diff = (a[finite].double() - e[finite].double()).abs()
    abs_err = float(diff.max()) if diff.numel() else 0.0
    rel_err = float((diff / e[finite].double().abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    if abs_err >= worst.abs_err:
        worst.abs_err, worst.leaf = abs_err, path
    worst.rel_err = max(worst.rel_err, rel_err)
    if torch.allclose(a, e, rtol=leaf_rtol, atol=leaf_atol, equal_nan=True):
        return None, leaf_rtol, leaf_atol, False
    exceeded = (
        f"{path}: max abs error {abs_err:.3g}, max rel error {rel_err:.3g} exceed "
        f"rtol={leaf_rtol:g}, atol={leaf_atol:g}"
    )
    if cosine and e[finite].numel() > 1:
        score = cosine_similarity(a[finite], e[finite])
        problem = None
        if score < COSINE_MIN:
            problem = (
                f"{exceeded}, and its cosine similarity to eager is {score:.4f} < {COSINE_MIN} "
                "(the mixed-precision rule)"
            )
        return problem, leaf_rtol, leaf_atol, False
    reference = references.leaf(path)
    if isinstance(reference, Tensor) and reference.shape == e.shape:
        ref = reference.detach().cpu()
        multiplier = _RMSE_MULTIPLIER.get(e.dtype, 2.0)
        res_rmse, ref_rmse = _rmse(a[finite], ref[finite]), _rmse(e[finite], ref[finite])
        if res_rmse <= multiplier * ref_rmse + leaf_atol / 10:
            return None, leaf_rtol, leaf_atol, True
        problem = f"{exceeded}; RMSE vs float64 {res_rmse:.3g} compiled vs {ref_rmse:.3g} eager"
        return problem, leaf_rtol, leaf_atol, True
    no_ref = f" (no float64 reference: {references.error})" if references.error else ""
    return f"{exceeded}{no_ref}", leaf_rtol, leaf_atol, False


def compare_outputs(
    actual: Any,
    expected: Any,
    *,
    eager_again: Any = None,
    reference: Callable[[], Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    cosine: bool = False,
) -> AccuracyResult:
    """Compare compiled ``actual`` with eager ``expected``.

    Args:
        eager_again: a second eager output; if it differs from ``expected`` eager is not
            deterministic and the check is skipped (with the reason) rather than guessed.
        reference: computes the float64 output of the same call, for the RMSE rule; called only
            when some leaf fails ``allclose``, and skipped if it raises or returns None.
        rtol, atol: override the per-dtype defaults of :data:`DEFAULT_TOLERANCES`.
        cosine: mixed precision: a leaf outside the tolerances passes at a cosine similarity
            to eager of at least :data:`COSINE_MIN` (PyTorch's harness rule for AMP).
    """
    if eager_again is not None:
        twice = compare_outputs(eager_again, expected, rtol=0.0, atol=0.0)
        if not twice.passed:
            return _without_errors(
                False,
                rtol,
                atol,
                skipped_reason=f"eager is not deterministic (two eager runs differ: {twice.message})",
            )
    if _structure(actual) != _structure(expected):
        return _failed(
            f"output structure differs: compiled {_structure(actual)} vs eager {_structure(expected)}",
            rtol,
            atol,
        )
    references = _LazyReference(reference)
    worst = _Worst()
    problems: list[str] = []
    used_ref = False
    leaf_rtol, leaf_atol = rtol or 0.0, atol or 0.0
    try:
        for (path, a), (_, e) in zip(flatten_outputs(actual), flatten_outputs(expected), strict=True):
            problem, leaf_rtol, leaf_atol, ref_used = _check_leaf(
                path, a, e, references, rtol, atol, worst, cosine
            )
            used_ref = used_ref or ref_used
            if problem:
                problems.append(problem)
    except OutputMismatch as exc:
        return _failed(str(exc), rtol, atol)
    return AccuracyResult(
        passed=not problems,
        max_abs_err=worst.abs_err,
        max_rel_err=worst.rel_err,
        rtol=leaf_rtol,
        atol=leaf_atol,
        message=_first(problems, keep=3),
        worst_leaf=worst.leaf,
        used_fp64_reference=used_ref,
    )


def _first(problems: list[str], keep: int) -> str:
    """The first ``keep`` problems, and how many more there are."""
    shown, rest = problems[:keep], problems[keep:]
    return "; ".join(shown) + (f"; and {len(rest)} more leaves" if rest else "")


def _failed(message: str, rtol: float | None, atol: float | None) -> AccuracyResult:
    return _without_errors(False, rtol, atol, message=message)


def _without_errors(
    passed: bool,
    rtol: float | None,
    atol: float | None,
    *,
    message: str = "",
    skipped_reason: str | None = None,
) -> AccuracyResult:
    """A result with no error figures: the leaves were never compared numerically."""
    return AccuracyResult(
        passed=passed,
        max_abs_err=math.nan,
        max_rel_err=math.nan,
        rtol=rtol or 0.0,
        atol=atol or 0.0,
        message=message,
        skipped_reason=skipped_reason,
    )
