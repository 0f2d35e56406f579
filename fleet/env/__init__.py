"""Environments over the simulator, for reinforcement-learning libraries.

- :class:`BatchedFleetEnv`: the whole fleet, tensors with a leading device axis (VMAS-style);
- :func:`parallel_env`: a PettingZoo ParallelEnv, one agent per device, a view of the former;
- ``fleet/Thermostat-v1``: one house as a Gymnasium env (registered when this package is
  imported: ``gymnasium.make("fleet.env:fleet/Thermostat-v1")`` imports it first);
- :class:`AcrobotParallelEnv`: Diff-DAC's multitask Acrobot, gymnasium's Acrobot-v1 batched over
  agents whose links differ (:mod:`fleet.env.acrobot`);
- :func:`train`: the project's actor-critic learners on any ParallelEnv with Box observations
  and Discrete actions.
"""

import gymnasium

from fleet.env.acrobot import AcrobotParallelEnv
from fleet.env.batched import BatchedFleetEnv
from fleet.env.parallel import FleetParallelEnv, parallel_env
from fleet.env.thermostat import ThermostatEnv

if "fleet/Thermostat-v1" not in gymnasium.registry:
    gymnasium.register(id="fleet/Thermostat-v1", entry_point="fleet.env.thermostat:ThermostatEnv")

__all__ = ["AcrobotParallelEnv", "BatchedFleetEnv", "FleetParallelEnv", "ThermostatEnv", "parallel_env"]
