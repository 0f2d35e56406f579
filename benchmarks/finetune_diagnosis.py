"""Why fine-tuning the pretrained policy does not beat it: greedy and sampled, frozen and fine-tuned.

While they learn, the devices *sample* their actions from the policy's softmax, and the policy
gradient improves that sampling policy; after ``learn_until`` they act *greedily*
(``evaluate: greedy``), as the frozen policy is evaluated. This measures both on the same houses
and days: the frozen point of a study runs to ``--split-days`` (the fine-tuning runs'
``learn_until``), and from that one state the rest of the run is played by each policy twice,
acting greedily and sampling: the frozen policy, and the actors of fine-tuning runs read from
their checkpoints (written at the end of a run; after ``learn_until`` the actors no longer
change). Per policy and mode: cost and discomfort per device-day over that rest (sampling at the frozen
point's ``temperature``, whatever the fine-tuning runs learned at). For a
fine-tuned actor also how far it moved from the policy it started from (parameters:
``||θ - θ0|| / ||θ0||`` per device, mean over devices) and, on the states its greedy rest
visits, the share of device-ticks whose greedy action differs from the starting policy's, and
the mean probability each policy gives its most probable action.

  python benchmarks/finetune_diagnosis.py benchmarks/studies/finetune-tune.yaml pretrained-frozen \\
      --runs studies/finetune-tune/runs --tuned diffusion-finetune centralized-finetune --seeds 0 1 2 \\
      -o benchmarks/results/finetune-diagnosis-seeds0-2.json
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from fleet.learners.shipped import policy_path
from fleet.learners.stacked import StackedMLP, load_actor
from fleet.results import CHECKPOINT, MAX_CHECKPOINT_BYTES
from fleet.sim.engine import Simulation
from fleet.statefile import load as load_state
from fleet.study import load_study
from fleet.study.spec import Run
from fleet.threads import set_threads
from fleet.tradeoff import estimate

MODES = ("greedy", "sample")
DAY_S = 86400.0


def kpis(sim: Simulation) -> np.ndarray:
    """(cost, discomfort degree-hours) of the fleet so far."""
    return np.array([sim.fleet.kpis.cost, sim.fleet.kpis.discomfort_degh])


def start_actor(learner) -> StackedMLP:
    """A copy of the learner's stacked actor holding the policy it started from (its ``init_policy``)."""
    actor = copy.deepcopy(learner.core.actor)
    load_actor(policy_path(learner.cfg.init_policy), actor.parameters, learner.adapter.layout)
    return actor


class ActionWatch:
    """Wraps a learner's ``act``: on every observation (N devices), the share of devices whose greedy
    action differs from the starting policy's, and each policy's mean probability of its top action."""

    def __init__(self, learner) -> None:
        self.learner, self.act = learner, learner.act
        self.start = start_actor(learner)
        self.changed: list[float] = []
        self.top_prob: list[tuple[float, float]] = []
        learner.act = self

    @torch.no_grad()
    def __call__(self, obs):
        x = self.learner.adapter.features(obs, self.learner.device).unsqueeze(1)  # (N, 1, F)
        now = self.learner.core.actor(x).squeeze(1).softmax(-1)  # (N, A)
        before = self.start(x).squeeze(1).softmax(-1)
        self.changed.append(float((now.argmax(-1) != before.argmax(-1)).float().mean()))
        self.top_prob.append((float(now.max(-1).values.mean()), float(before.max(-1).values.mean())))
        return self.act(obs)


def moved(learner) -> float:
    """Mean over devices of ||θ - θ0|| / ||θ0|| of the actor's parameters (θ0: its init_policy)."""
    flat, flat0 = (
        torch.cat([p.detach().reshape(p.shape[0], -1) for p in actor.parameters], 1)
        for actor in (learner.core.actor, start_actor(learner))
    )
    return float(((flat - flat0).norm(dim=1) / flat0.norm(dim=1)).mean())


def tuned_actor(run_dir: Path) -> list[torch.Tensor]:
    """The actor's stacked parameters (weight, bias, ... each (N, ...)) in a run's checkpoint."""
    state = load_state(run_dir / CHECKPOINT, "simulation", MAX_CHECKPOINT_BYTES)["simulation"]
    params = state["fleet"]["controller"]["core"]["params"]
    return params[: len(params) // 2]  # the actor's layers, then the critic's (same sizes)


def play_rest(run: Run, state: dict, start: np.ndarray, mode: str, actor: list[torch.Tensor] | None) -> dict:
    """The rest of ``run`` from ``state`` (at kpis ``start``), acting by ``mode`` with ``actor`` (None: its own)."""
    rest = Simulation(run.scenario)
    rest.load_state_dict(state)
    learner = rest.fleet.controller
    learner.cfg = learner.cfg.model_copy(update={"evaluate": mode})
    out: dict = {}
    watch = None
    if actor is not None:
        with torch.no_grad():
            for mine, tuned in zip(learner.core.actor.parameters, actor):
                mine.copy_(tuned)
        out["actor_moved"] = moved(learner)
        watch = ActionWatch(learner) if mode == "greedy" else None
    at = rest.env.now
    rest.start()
    rest.env.run(until=run.scenario.horizon)
    per_device_day = (kpis(rest) - start) / rest.world.n / ((run.scenario.horizon - at) / DAY_S)
    out.update(cost=per_device_day[0], discomfort_degh=per_device_day[1])
    if watch is not None:
        out["greedy_changed"] = float(np.mean(watch.changed))
        out["top_prob"] = dict(zip(("tuned", "start"), np.mean(watch.top_prob, 0).tolist()))
    return out


def diagnose(run: Run, split_s: float, tuned: dict[str, Path]) -> dict:
    """The frozen ``run`` to ``split_s``, then its rest played by it and by each ``tuned`` run's actor
    (name -> run folder), greedy and sampled."""
    sim = Simulation(run.scenario)
    sim.start()
    sim.env.run(until=split_s)
    state, start = sim.state_dict(), kpis(sim)
    policies = {"frozen": None, **{name: tuned_actor(path) for name, path in tuned.items()}}
    return {
        name: {mode: play_rest(run, state, start, mode, actor) for mode in MODES} for name, actor in policies.items()
    }


def summary(seeds: dict[str, dict]) -> list[str]:
    """Markdown rows: per policy and mode, mean ± 95 % t over the seeds of cost and discomfort minus the frozen
    policy's *greedy* ones on the same seed, and of the fine-tuned actors' movement."""
    rows = []
    first = next(iter(seeds.values()))
    for name, modes in first.items():
        for mode in MODES:
            cells = []
            for key in ("cost", "discomfort_degh"):
                e = estimate([row[name][mode][key] - row["frozen"]["greedy"][key] for row in seeds.values()])
                cells.append(f"{e.mean:+.3f} ± {e.ci95_half_width:.3f}")
            moved_cells = ["", ""]
            if mode == "greedy" and "greedy_changed" in modes["greedy"]:
                changed = estimate([row[name]["greedy"]["greedy_changed"] for row in seeds.values()])
                norm = estimate([row[name]["greedy"]["actor_moved"] for row in seeds.values()])
                moved_cells = [f"{100 * changed.mean:.1f} ± {100 * changed.ci95_half_width:.1f} %", f"{norm.mean:.4f}"]
            rows.append(f"| {name} | {mode} | {' | '.join(cells)} | {' | '.join(moved_cells)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("frozen", help="the study's point of the frozen policy")
    ap.add_argument("--runs", type=Path, required=True, help="folder of the fine-tuning runs, <point>-seed<k>")
    ap.add_argument("--tuned", nargs="+", required=True, help="points of the fine-tuning runs")
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--split-days", type=float, default=35.0, help="the fine-tuning runs' learn_until")
    ap.add_argument("-o", "--out", type=Path, default=None)
    args = ap.parse_args()
    set_threads(1)  # as `fleet run` for a small fleet: more threads only wait on each other
    result: dict = {"study": str(args.study), "split_days": args.split_days, "seeds": {}}
    for run in load_study(args.study).runs_of(args.frozen):
        if run.seed in args.seeds:
            tuned = {name: args.runs / f"{name}-seed{run.seed}" for name in args.tuned}
            result["seeds"][str(run.seed)] = row = diagnose(run, args.split_days * DAY_S, tuned)
            print(run.seed, json.dumps(row), flush=True)
    print("\n".join(summary(result["seeds"])))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
