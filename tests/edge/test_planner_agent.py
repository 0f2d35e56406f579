"""The planner on boards: N = 1 agents identify, plan and exchange their statistics over a broker."""

import numpy as np

from fleet.mqtt.codec import decode
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from tests.conftest import tiny_scenario
from tests.edge.agents import memory_agent, started, view_of


def planner_raw() -> dict:
    """The tiny scenario (1-minute ticks, two hours) with planner-v1 planning after half an hour."""
    raw = tiny_scenario()
    params = {"identification": {"min_data": "30min"}, "replan_period": "20min", "horizon": "4h"}
    raw["learner"] = {"name": "planner-v1", "params": params}
    return raw


def test_boards_identify_plan_and_take_their_neighbours_statistics(tmp_path):
    broker = MemoryBroker()
    spy = MemoryTransport(broker, "spy")
    spy.subscribe("fleet/+/+/params")
    spy.connect(1)
    raw = planner_raw()
    threads = [started(memory_agent(view_of(raw, d), broker, tmp_path / d)) for d in ("d00000", "d00001")]
    agents = [t.finish() for t in threads]
    for agent in agents:
        learner = agent.learner
        assert learner.n == 1 and learner.planning.all() and learner.plans == 7200 // 1200
        assert np.isfinite(learner.edge_time).any()  # a neighbour's statistics arrived and were taken
        assert learner.rejected_stats == 0 and agent.counters.rejected == agent.counters.malformed == 0
    messages = [decode(m.payload) for m in spy.drain()]
    assert messages and all(m.arrays[0].shape == (9,) and m.arrays[0].dtype == np.float32 for m in messages)
    assert (tmp_path / "d00000" / "checkpoint.safetensors").exists()
