"""Does the cloned Vickrey society reach the paper's equilibrium? The bandit and the 6-state chain over seeds.

At the dominant-strategy equilibrium each primitive bids its societal Q-value (Chang et al.,
ICML 2020). This trains one society per seed on each task (:mod:`fleet.learners.auction.tasks`)
and prints each primitive's mean bid in each state, over the seeds with a 95 % Student t interval,
next to the paper's values; ``--out`` writes them as JSON. Recorded in docs/studies/auction.md::

    nice -n 10 python benchmarks/auction_equilibrium.py --seeds 5 --out benchmarks/results/auction-equilibrium.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fleet.learners.auction.society import Society
from fleet.learners.auction.tasks import BANDIT, CHAIN, Bandit, Chain, equilibrium_bids, train
from fleet.tradeoff import estimate

GAMMA = 0.99
PAPER = {
    "bandit": {"arm": [[0.2, 0.4, 0.6, 0.8]]},
    "chain": {
        "left": [0.7608, 0.7608, 0.7685, 0.7762, 0.7841],
        "right": [0.7685, 0.7762, 0.7841, 0.7920, 0.8000],
    },
}
"""The paper's equilibrium bids (issue 16): the bandit's arms; the chain's primitives in states 0..4."""


def run(task: str, seed: int, steps: int) -> torch.Tensor:
    """Train a society of one device on ``task`` for ``steps`` steps; its mean bids (S, P)."""
    env, cfg = (Bandit(1), BANDIT) if task == "bandit" else (Chain(1), CHAIN)
    society = Society(
        cfg, 1, env.obs_dim, env.arms if task == "bandit" else 2, GAMMA, torch.Generator().manual_seed(seed)
    )
    train(society, env, steps, update_every=256)
    return equilibrium_bids(society, env)[0]


def table(task: str, bids: torch.Tensor) -> list[dict]:
    """Rows (primitive, state, paper, mean, half-width of the 95 % interval) of bids (seeds, S, P)."""
    rows = []
    if task == "bandit":
        names = [(f"arm {k}", 0, k) for k in range(bids.shape[2])]
        paper = PAPER["bandit"]["arm"][0]
    else:
        names = [(name, s, p) for p, name in enumerate(("left", "right")) for s in range(bids.shape[1])]
    for name, s, p in names:
        e = estimate(bids[:, s, p].tolist())
        expected = paper[p] if task == "bandit" else PAPER["chain"][name][s]
        rows.append({"primitive": name, "state": s, "paper": expected, "mean": e.mean, "ci95": e.ci95_half_width})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bandit-steps", type=int, default=20_000, help="episodes of the bandit per seed")
    parser.add_argument("--chain-steps", type=int, default=80_000, help="steps of the chain per seed")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: more threads only wait on each other
    results = {}
    for task, steps in (("bandit", args.bandit_steps), ("chain", args.chain_steps)):
        start = time.perf_counter()
        bids = torch.stack([run(task, seed, steps) for seed in range(args.seeds)])
        results[task] = {"steps": steps, "seconds": time.perf_counter() - start, "rows": table(task, bids)}
        print(f"\n{task}: {steps} steps x {args.seeds} seeds in {results[task]['seconds']:.0f} s")
        print("| primitive | state | paper | bid (mean ± 95 %) | off by |")
        print("|---|---|---|---|---|")
        for r in results[task]["rows"]:
            print(
                f"| {r['primitive']} | {r['state']} | {r['paper']:.4f} | {r['mean']:.4f} ± {r['ci95']:.4f} "
                f"| {r['mean'] - r['paper']:+.4f} |"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"seeds": args.seeds, "gamma": GAMMA, **results}, f, indent=1)


if __name__ == "__main__":
    main()
