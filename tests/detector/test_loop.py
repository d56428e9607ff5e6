"""Tests for pipeline.detector.loop: the optimiser step, best-state tracking, early stopping, phases, dvclive."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pipeline.detector.loop import EpochResult, Phase, RunState, fit, live_log, optimizer_step
from pipeline.models import checkpointer


class FakeLive:
    """Stands in for dvclive.Live: the (name, value) calls of each step."""

    def __init__(self) -> None:
        self.steps: list[list[tuple[str, float]]] = [[]]

    def log_metric(self, name: str, value: float) -> None:
        self.steps[-1].append((name, value))

    def next_step(self) -> None:
        self.steps.append([])


def _toy(lr: float = 0.1) -> RunState:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    return RunState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr))


def _batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(epoch)
    return [(torch.randn(4, 3, generator=g), torch.tensor([0, 1, 0, 1])) for _ in range(2)]


def _phase(state: RunState, keys: list[float], snapshots: dict[int, dict], **kw) -> Phase:
    """A phase whose dev keys are `keys` in turn; the model state after each epoch goes into `snapshots`."""
    it = iter(keys)

    def step(batch):
        return nn.functional.cross_entropy(state.model(batch[0]), batch[1])

    def evaluate(epoch: int, losses: list[float]) -> EpochResult:
        snapshots[epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}
        key = next(it)
        return EpochResult(key, {"train/loss": sum(losses) / len(losses), "dev/eer": key, "dev/none": None},
                           {"epoch": epoch, "key": key})

    return Phase("toy", len(keys), _batches, step, evaluate, **kw)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_after_patience_epochs_and_restores_the_best_state():
    state, snaps, saved = _toy(), {}, []
    phase = _phase(state, [0.5, 0.3, 0.4, 0.35, 0.2, 0.1], snaps, patience=2,
                   checkpoint=lambda m: saved.append({k: v.clone() for k, v in m.state_dict().items()}))
    ran = fit(state, phase)
    assert ran == 4 and state.epoch == 4  # best at epoch 1, then 2 epochs without improvement
    assert state.best_epoch == 1 and state.best_key == 0.3 and state.stale == 2
    assert [r["key"] for r in state.history] == [0.5, 0.3, 0.4, 0.35]
    assert _same(state.model.state_dict(), snaps[1]) and not _same(snaps[1], snaps[3])
    assert len(saved) == 2 and _same(saved[0], snaps[0]) and _same(saved[1], snaps[1])  # one save per improvement
    assert state.step == 8 and len(state.step_times) == 8


def test_patience_zero_never_stops_and_a_tie_keeps_the_earlier_epoch():
    state, snaps = _toy(), {}
    assert fit(state, _phase(state, [0.4, 0.2, 0.2, 0.3, 0.5], snaps, patience=0)) == 5
    assert state.best_epoch == 1 and _same(state.model.state_dict(), snaps[1])


def test_a_second_phase_continues_the_epoch_and_step_count_and_resets_the_best():
    state, snaps, seen = _toy(), {}, []
    fit(state, _phase(state, [0.3, 0.1], snaps))
    second = _phase(state, [0.9, 0.8, 0.95], snaps, train_mode=False)
    second.batches = lambda epoch: seen.append(epoch) or _batches(epoch)
    assert fit(state, second) == 3
    assert seen == [2, 3, 4] and state.epoch == 5 and state.step == 10
    assert state.best_epoch == 3 and state.best_key == 0.8  # worse than phase 1's best: the phase's own best
    assert _same(state.model.state_dict(), snaps[3])


def test_train_mode_follows_the_phase():
    state, modes = _toy(), []

    def step(batch):
        modes.append(state.model.training)
        return state.model(batch[0]).sum()

    for train_mode in (True, False):
        fit(state, Phase("m", 1, _batches, step, lambda e, losses: EpochResult(0.0, {}, {}), train_mode=train_mode))
    assert modes == [True, True, False, False]


def test_the_step_helper_clips_the_gradient_norm():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = (model(torch.full((1, 4), 100.0)) - 1.0).pow(2).sum()  # gradient 2 * (0 - 1) * x = -200 per weight: norm 400
    norm = optimizer_step(opt, loss, max_norm=0.5)
    assert norm == pytest.approx(400.0)
    assert float(model.weight.detach().norm()) == pytest.approx(0.5, rel=1e-5)  # SGD, lr 1: update = clipped grad


def test_the_step_helper_without_clipping_steps_the_full_gradient_and_the_scheduler():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loss = (model(torch.full((1, 4), 100.0)) - 1.0).pow(2).sum()
    assert optimizer_step(opt, loss, scheduler=sched) is None
    assert float(model.weight.detach().norm()) == pytest.approx(400.0)
    assert opt.param_groups[0]["lr"] == 0.5
    assert model.weight.grad is not None
    optimizer_step(opt, model(torch.ones(1, 4)).sum())
    assert torch.equal(model.weight.grad, torch.ones(1, 4))  # zeroed before backward: no accumulation


def test_dvclive_gets_the_metrics_in_order_without_none_one_step_per_epoch():
    state, live = _toy(), FakeLive()
    fit(state, _phase(state, [0.5, 0.3], {}), live)
    assert [[name for name, _ in step] for step in live.steps] == [["train/loss", "dev/eer"]] * 2 + [[]]
    assert [step[1][1] for step in live.steps[:2]] == [0.5, 0.3]


def test_live_log_writes_params_and_curves_under_its_folder_only(tmp_path):
    pytest.importorskip("dvclive")
    with live_log(tmp_path / "dvclive", {"objective": "ce"}) as live:
        live.log_metric("dev/eer", 0.25)
        live.next_step()
    assert (tmp_path / "dvclive" / "params.yaml").exists()
    assert json.loads((tmp_path / "dvclive" / "metrics.json").read_text())["dev"]["eer"] == 0.25
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "dvclive" / "dvc.yaml").exists()
    with live_log(tmp_path / "off", {"x": 1}, enabled=False) as live:
        assert live is None
    assert not (tmp_path / "off").exists()


def test_the_checkpointer_saves_a_loadable_model(tmp_path):
    from pipeline.models import build_model, load_checkpoint

    model = build_model({"arch": "resnet", "width": 4, "embedding_dim": 8, "sample_rate": 16000})
    checkpointer(tmp_path / "model.pt", {"seed": 3})(model)
    loaded, config = load_checkpoint(tmp_path)
    assert config["seed"] == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
