"""Stable-Baselines3's PPO on one simulated thermostat (``fleet/Thermostat-v1``).

    .venv/bin/python docs/examples/sb3_ppo_thermostat.py --timesteps 200000

Trains PPO on the house of ``fleet/Thermostat-v1`` (2 winter days of 1-minute ticks per
episode, time-of-use tariff), then runs one greedy episode and prints its KPIs beside those of
the rule-based thermostat on the same house, weather and sensor noise (the ``baseline/...``
entries of ``info``). Needs the ``examples`` extra (``pip install -c constraints.txt -e '.[examples]'``).
"""

from __future__ import annotations

import argparse

import gymnasium
import torch
from stable_baselines3 import PPO

import fleet.env  # noqa: F401  (registers fleet/Thermostat-v1)

KPIS = ("cost", "energy_kwh", "discomfort_degh")


def train_ppo(timesteps: int, seed: int = 0, n_steps: int = 2048, **env_overrides) -> PPO:
    """PPO (SB3's defaults but ``n_steps``) trained for ``timesteps`` on fleet/Thermostat-v1."""
    env = gymnasium.make("fleet/Thermostat-v1", **env_overrides)
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=min(64, n_steps), seed=seed, device="cpu", verbose=0)
    return model.learn(total_timesteps=timesteps)


def evaluate(model: PPO, seed: int = 100, **env_overrides) -> dict[str, float]:
    """One greedy episode on a house and days not trained on (``seed``): the KPIs of PPO and of the rule-based
    thermostat."""
    env = gymnasium.make("fleet/Thermostat-v1", **env_overrides)
    obs, info = env.reset(seed=seed)
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(int(action))
        done = terminated or truncated
    return {f"{who}/{k}": info[f"{who}/{k}"] for who in ("kpi", "baseline") for k in KPIS}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timesteps", type=int, default=200_000, help="PPO training steps [default: %(default)s]")
    p.add_argument("--seed", type=int, default=0, help="PPO's and the training houses' seed [default: %(default)s]")
    p.add_argument("--horizon", default="2d", help="episode length, a duration [default: %(default)s]")
    p.add_argument("--n-steps", type=int, default=2048, help="PPO rollout length [default: %(default)s]")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one house: a small MLP, more threads only wait on each other
    model = train_ppo(args.timesteps, args.seed, args.n_steps, horizon=args.horizon)
    kpis = evaluate(model, horizon=args.horizon)
    for k in KPIS:
        print(f"{k:>16}: PPO {kpis[f'kpi/{k}']:8.3f}   rule-based thermostat {kpis[f'baseline/{k}']:8.3f}")
    return kpis


if __name__ == "__main__":
    main()
