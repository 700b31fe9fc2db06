"""``perf.train_step``: snapshots, compiled against eager after one step, and checks that could
not run said, never passed. One inner session runs every case (tiny SE-ResNet, aot_eager)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from pytest_keisei_perf.training import Snapshot, state_problem

STEPS = """
import pytest
import torch
from keisei_models.se_resnet import SEResNet, example_training_batch, training_loss


def wrong_backward(gm, example_inputs):
    '''A backend whose forward is right and whose gradients are doubled.'''
    def run(*args):
        out = gm(*args)
        def doubled(t):
            return t.detach() + (t - t.detach()) * 2 if isinstance(t, torch.Tensor) and t.requires_grad else t
        return tuple(doubled(t) for t in out) if isinstance(out, (tuple, list)) else doubled(out)
    return run


def tiny():
    torch.manual_seed(0)
    model = SEResNet(num_blocks=1, channels=8, se_ratio=0.25, bottleneck=4)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), example_training_batch(4)


def make_step(opt):
    def step(model, obs, legal, target, value_class, score):
        opt.zero_grad()
        loss = training_loss(model(obs), legal, target, value_class, score)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def test_good(perf):
    model, opt, batch = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = perf.train_step(make_step(opt), model, *batch.tensors, state=(opt,))
    assert result.accuracy.checked and result.accuracy.passed
    assert result.accuracy.worst_leaf.startswith("output[")
    assert result.items == 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # left as found
    assert opt.state_dict()["state"] == {}  # the optimizer too: it had taken no step


def test_whole_step_compiled(perf):
    model, opt, batch = tiny()
    step = make_step(opt)
    result = perf.train_step(step, model, *batch.tensors, state=(opt,), compile_step=True, amp=torch.bfloat16)
    assert result.accuracy.checked and result.accuracy.passed
    assert result.compile_kwargs["train_step"] == "step"
    assert result.compile_kwargs["amp"] == "bfloat16"


def test_no_state(perf):
    model, opt, batch = tiny()
    perf.train_step(make_step(opt), model, *batch.tensors)


@pytest.mark.perf(compile={"backend": wrong_backward})
def test_wrong_backward(perf):
    model, opt, batch = tiny()
    perf.train_step(make_step(opt), model, *batch.tensors, state=(opt,))


@pytest.mark.perf(inference_mode=False)
def test_training_loop_through_benchmark(perf):
    model, opt, batch = tiny()
    perf.benchmark(make_step(opt), model, *batch.tensors)


def test_bad_state(perf):
    model, opt, batch = tiny()
    perf.train_step(make_step(opt), model, *batch.tensors, state=(opt, object()))
"""

FAST = (
    "--perf-budget=0.05",
    "--perf-rounds=5",
    "--perf-compile-backend=aot_eager",
    "-p",
    "no:cacheprovider",
    "-o",
    "markers=perf",
)


Session = tuple[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Every case in one real session (a fresh process); its output and JSON report."""
    folder = tmp_path_factory.mktemp("train-steps")
    (folder / "test_steps.py").write_text(STEPS)
    report = folder / "perf.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *FAST, f"--perf-json={report}", "-rA",
         f"--perf-baseline-dir={folder}"],
        cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr  # two cases fail on purpose
    data = json.loads(report.read_text())
    return proc.stdout, {r["benchmark_id"].split("::")[-1]: r for r in data["results"]}


def test_a_training_step_is_checked_against_eager_and_leaves_the_model_as_found(session: Session) -> None:
    out, by_test = session
    assert "2 failed, 4 passed" in out
    assert "PASSED test_steps.py::test_good" in out
    assert "PASSED test_steps.py::test_whole_step_compiled" in out
    good = by_test["test_good"]
    assert good["compile_kwargs"]["train_step"] == "model"
    assert set(good["modes"]) == {"eager", "compiled"}


def test_a_whole_compiled_step_recompiles_once_not_every_round(session: Session) -> None:
    """Timed rounds restore the optimizer in place: a compiled step guards on its state tensors,
    and new ones each round made every round time a recompile (7 recompiles, 1.6 s against 12 ms
    per step, until dynamo's cache limit). One recompile is real: the first step makes the state."""
    _, by_test = session
    compiled = by_test["test_whole_step_compiled"]["modes"]["compiled"]
    assert compiled["fallback"] is False
    assert compiled["recompiles"] == 1
    assert by_test["test_good"]["modes"]["compiled"]["recompiles"] == 0  # the model alone: none


def test_a_compiled_backward_that_is_wrong_fails_naming_the_parameter(session: Session) -> None:
    out, _ = session
    assert "FAILED test_steps.py::test_wrong_backward" in out
    mismatch = next(x for x in out.splitlines() if "test_wrong_backward: compiled output does not match" in x)
    assert "output['grad']['" in mismatch  # a gradient, named by its parameter
    assert "max abs error" in mismatch


def test_a_step_without_its_state_is_not_checked_and_says_so(session: Session) -> None:
    out, by_test = session
    assert "PASSED test_steps.py::test_no_state" in out
    line = next(x for x in out.splitlines() if x.startswith("keisei-perf: NOT CHECKED"))
    assert "2 benchmark(s)" in line  # the step without state, and the loop through perf.benchmark
    assert "pass it in state=" in line or "eager is not deterministic" in line
    for name in ("test_no_state", "test_training_loop_through_benchmark"):
        accuracy = by_test[name]["accuracy"]
        assert accuracy is not None
        assert accuracy["passed"] is False
        assert accuracy["skipped_reason"]
    assert "unchecked" in next(
        x for x in out.splitlines() if x.startswith("test_no_state ") and "compiled" in x
    )


def test_bad_state_is_named(session: Session) -> None:
    out, _ = session
    assert "test_bad_state: perf.train_step(state=...): state[1] (object) has no state_dict()" in out


def test_strict_accuracy_fails_a_check_that_could_not_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_loop="""
import torch

def test_loop(perf):
    w = torch.ones(64)
    def step(x):
        w.mul_(1.001)  # state nobody restores
        return w * x
    perf.benchmark(step, torch.ones(64))
"""
    )
    result = pytester.runpytest(*FAST, "--perf-strict-accuracy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test_loop: outputs were NOT CHECKED: eager is not deterministic*(--perf-strict-accuracy)*"]
    )


def test_snapshot_restores_weights_optimizer_and_rng() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snapshot = Snapshot(model, [opt])
    draw = torch.rand(3)
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    model.eval()
    snapshot.restore()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert opt.state_dict()["state"] == {}
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.rand(3), draw)  # the RNG too
    assert state_problem([opt]) is None
    assert state_problem([model]) == "state[0] is a module (Sequential); pass it as the model or leave it out"


def test_a_model_called_in_another_train_eval_state_than_compiled_fails_naming_it() -> None:
    """Compiling bakes in BatchNorm's training flag: a benchmark whose model flips between train
    and eval makes dynamo recompile, and the result says which module, instead of timing two
    graphs as one."""
    from torch import nn

    from pytest_keisei_perf import runner
    from pytest_keisei_perf.settings import BenchmarkConfig

    class Flipping(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(x)

    def flip(mod: nn.Module, _args: object) -> None:
        mod.bn.train(not mod.bn.training)

    model = Flipping().eval()
    model.register_forward_pre_hook(flip)
    config = BenchmarkConfig(
        modes=("eager", "compiled"), threshold=0.05, alpha=0.05, rtol=None, atol=None, min_speedup=None,
        compile_kwargs={"backend": "eager"}, budget_s=0.05, rounds=5, check_outputs=False,
    )  # fmt: skip
    result = runner.run_benchmark(model, (torch.randn(3, 4),), {}, config=config, nodeid="t.py::t", name="")
    [failure] = result.failures
    assert "self._modules['bn'] was compiled with training=" in failure
    assert "timings mix two graphs" in failure
    torch.compiler.reset()  # as every benchmark's compile does
    steady = torch.compile(nn.BatchNorm1d(4).eval(), backend="eager")
    steady(torch.randn(3, 4))
    steady(torch.randn(3, 4))
    from pytest_keisei_perf.modes import training_mode_switches

    assert training_mode_switches("t") == []


def test_a_restore_keeps_the_optimizer_state_tensors_it_can_copy_into() -> None:
    """Once an optimizer has state, a restore copies into its tensors (their identity is what a
    compiled step guards on) and puts back the hyperparameters a scheduler moved; a restore to
    "no state yet" still drops them."""
    model = torch.nn.Linear(4, 4)
    adamw = torch.optim.AdamW(model.parameters(), lr=0.1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    empty = Snapshot(model, [adamw, sgd, schedule])

    def step() -> None:
        for opt in (adamw, sgd):
            opt.zero_grad()
            model(torch.ones(2, 4)).sum().backward()
            opt.step()
        schedule.step()

    step()
    after_one = Snapshot(model, [adamw, sgd, schedule])
    moments = {k: v.clone() for k, v in adamw.state[model.weight].items()}
    held = adamw.state[model.weight]["exp_avg"], sgd.state[model.weight]["momentum_buffer"]
    step()
    step()
    after_one.restore()
    assert adamw.state[model.weight]["exp_avg"] is held[0]  # the same tensor, its values back
    assert sgd.state[model.weight]["momentum_buffer"] is held[1]
    assert all(torch.equal(adamw.state[model.weight][k], v) for k, v in moments.items())
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.05)
    assert schedule.last_epoch == 1
    empty.restore()
    assert adamw.state_dict()["state"] == {}
    assert sgd.state_dict()["state"] == {}
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.1)


def test_a_state_object_that_hands_out_copies_is_restored_by_load_state_dict() -> None:
    """Copying into tensors that state_dict() made fresh would restore nothing: such an object
    is restored through load_state_dict, as is one whose plain values changed."""

    class Counter:
        def __init__(self) -> None:
            self.total = torch.zeros(3)
            self.calls = 0

        def state_dict(self) -> dict[str, object]:
            return {"total": self.total.clone(), "calls": self.calls}

        def load_state_dict(self, state: dict[str, object]) -> None:
            total, calls = state["total"], state["calls"]
            assert isinstance(total, torch.Tensor)
            assert isinstance(calls, int)
            self.total, self.calls = total, calls

    model = torch.nn.Linear(2, 2)
    counter = Counter()
    snapshot = Snapshot(model, [counter])
    counter.total += 5
    snapshot.restore()
    assert torch.equal(counter.total, torch.zeros(3))
    counter.calls = 4
    snapshot.restore()
    assert counter.calls == 0
