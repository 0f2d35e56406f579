"""Why fine-tuning the pretrained policy does not beat it: greedy and sampled, frozen and fine-tuned.

While they learn, the devices *sample* their actions from the policy's softmax, and the policy
gradient improves that sampling policy; after ``learn_until`` they act *greedily*
(``evaluate: greedy``), as the frozen policy is evaluated. This measures both on the same houses
and days: each point of a study (e.g. the frozen policy and a fine-tuning one) runs to its
``learn_until`` (or ``--split``), and from that one state the rest of the run twice, acting
greedily and sampling. Per point and mode: cost and discomfort per device-day over that rest.
For a point that learned, also how far its actor moved from the policy it started from
(parameters: ``||θ - θ0|| / ||θ0||`` per device, mean over devices) and, on the states its
greedy run visits, the share of device-ticks whose greedy action differs from the starting
policy's, and the mean probability each policy gives its most probable action.

  python benchmarks/finetune_diagnosis.py benchmarks/studies/finetune-tune.yaml --seeds 0 1 \\
      --points pretrained-frozen diffusion-finetune -o benchmarks/results/finetune-diagnosis.json
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
from fleet.sim.engine import Simulation
from fleet.study import load_study
from fleet.study.spec import Run

MODES = ("greedy", "sample")
DAY_S = 86400.0


def split_time(sim: Simulation, split_s: float | None) -> float:
    """When the rest of the run starts: ``split_s``, else the learner's ``learn_until``, else the last eighth."""
    return split_s or sim.fleet.controller.cfg.learn_until or sim.scenario.horizon * 7 / 8


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


def diagnose(run: Run, split_s: float | None) -> dict:
    """The rest of ``run`` from its split, greedy and sampled, and how far its actor moved."""
    sim = Simulation(run.scenario)
    at = split_time(sim, split_s)
    sim.start()
    sim.env.run(until=at)
    state, before = sim.state_dict(), kpis(sim)
    learned = not sim.fleet.controller.cfg.frozen
    out: dict = {"split_days": at / DAY_S}
    if learned:
        out["actor_moved"] = moved(sim.fleet.controller)
    for mode in MODES:
        rest = Simulation(run.scenario)
        rest.load_state_dict(state)
        learner = rest.fleet.controller
        learner.cfg = learner.cfg.model_copy(update={"evaluate": mode})
        learner.learning = False
        watch = ActionWatch(learner) if learned and mode == "greedy" else None
        rest.start()
        rest.env.run(until=run.scenario.horizon)
        per_device_day = (kpis(rest) - before) / rest.world.n / ((run.scenario.horizon - at) / DAY_S)
        out[mode] = {"cost": per_device_day[0], "discomfort_degh": per_device_day[1]}
        if watch is not None:
            out["greedy_changed"] = float(np.mean(watch.changed))
            top = np.mean(watch.top_prob, 0)
            out["top_prob"] = {"fine_tuned": top[0], "start": top[1]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--points", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--split-days", type=float, default=None, help="split here instead of at learn_until")
    ap.add_argument("-o", "--out", type=Path, default=None)
    args = ap.parse_args()
    study = load_study(args.study)
    split_s = None if args.split_days is None else args.split_days * DAY_S
    result: dict = {"study": str(args.study), "points": {}}
    for point in args.points:
        for run in study.runs_of(point):
            if run.seed in args.seeds:
                row = diagnose(run, split_s)
                result["points"].setdefault(point, {})[str(run.seed)] = row
                print(point, run.seed, json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
