"""cooperative-v1 on a fleet: the feeder model of IER, the others deduced from the meter, memory."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.learners import Deliveries, LearnerContext, make_learner
from fleet.learners.base import N_FEATURES, Observation
from fleet.learners.cooperative.config import CooperativeLearnerConfig
from fleet.learners.cooperative.imagine import imagine
from fleet.learners.cooperative.learner import FEEDER_COLUMN, FeederDynamics
from fleet.learners.cooperative.replay import Batch, ReplayMemory
from fleet.learners.features import PRICE_SCALE
from fleet.testing import _observation, check_learner_contract

LEVELS_KW = [0.0, 1.0, 2.0, 3.0]


def test_feeder_model_reprices_the_overload_share_and_the_energy():
    """Lived: own 2 kW, others 10 kW on a 10 kW feeder (2 kW over, the device's share 2/12), price 0.3;
    penalty 5 per kWh of overload, one-minute ticks. Imagined alone: 2 kW, no overload.
    Imagined idle: 0 kW with the others' 10 kW, no overload and 2 kW less energy."""
    dt_h, weight, price = 1 / 60, 5.0, 0.3
    feeder = FeederDynamics(torch.tensor([LEVELS_KW]), torch.tensor([10.0]), weight, dt_h)
    obs = torch.zeros(1, 2, N_FEATURES)
    obs[..., 8] = price / PRICE_SCALE
    lived = Batch(
        obs,
        torch.tensor([[2, 2]]),
        torch.tensor([[-1.0, -1.0]]),
        torch.zeros(1, 2, N_FEATURES),
        torch.tensor([[10.0, 10.0]]),
    )
    next_obs, reward = feeder.imagine(lived, torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 10.0]]))
    lived_penalty = weight * 2 * (2 / 12) * dt_h
    assert reward[0, 0] == pytest.approx(-1.0 + lived_penalty)
    assert reward[0, 1] == pytest.approx(-1.0 + lived_penalty + 2 * price * dt_h)
    assert next_obs[0, :, FEEDER_COLUMN].tolist() == pytest.approx([0.2, 1.0])


def context(n: int) -> LearnerContext:
    levels = np.tile(LEVELS_KW, (n, 1))
    return LearnerContext(n, 4, "heat", np.random.default_rng(0), levels_kw=levels, reward_weights=(1.0, 5.0))


def test_the_others_are_the_meters_load_less_the_devices_own_power():
    """Two devices of one 6 kW feeder read 4.5 kW after their tick: each stores others = 4.5 - own."""
    learner = make_learner("cooperative-v1", {}, context(2))
    rng = np.random.default_rng(0)
    action = learner.act(_observation(2, 1, rng))
    learner.observe(np.array([-0.1, -0.2]))
    reading = np.array([[0, 4.5, 6.0, 2]], np.float32)
    learner.inbox(
        "meter", Deliveries(np.array([0, 1]), np.array([9, 9]), np.array([60.0, 60.0]), np.array([0, 0]), [reading])
    )
    learner.act(_observation(2, 2, rng))
    memory = learner.core.memory
    assert memory.size == 1
    assert memory.others[:, 0].tolist() == pytest.approx([4.5 - LEVELS_KW[a] for a in action])
    assert memory.reward[:, 0].tolist() == pytest.approx([-0.1, -0.2])
    assert memory.next_obs[:, 0, FEEDER_COLUMN].tolist() == pytest.approx([0.75, 0.75])  # 4.5 of 6 kW
    assert learner.core.n_others.flatten().tolist() == [1.0, 1.0]


def test_an_older_reading_does_not_replace_a_newer_one():
    learner = make_learner("cooperative-v1", {}, context(1))
    readings = np.array([[0, 4.0, 6.0, 3], [0, 2.0, 6.0, 3]], np.float32)
    learner.inbox(
        "meter", Deliveries(np.array([0, 0]), np.array([9, 9]), np.array([120.0, 60.0]), np.array([0, 1]), [readings])
    )
    assert learner.reading[0].tolist() == [4.0, 6.0, 3.0]


def test_ten_thousand_devices_replay_memories_fit_in_4_gb():
    """Per device and transition: two float32 observations, a uint8 action, float32 reward and others, and the
    int16 action forced at the next observation."""
    cfg = CooperativeLearnerConfig()
    per_transition = 2 * 4 * N_FEATURES + 1 + 4 + 4 + 2
    small = ReplayMemory(3, cfg.capacity, N_FEATURES, "cpu")
    assert small.nbytes == 3 * cfg.capacity * per_transition
    assert 10_000 * cfg.capacity * per_transition < 4e9


def test_the_feeder_model_imagines_only_twins_that_keep_the_devices_level():
    """Its comfort is unknown at another level: with everyone acting (psi = 1) and no
    exploration, every twin is the others copying the device, at the device's own level."""
    controls = torch.tensor([LEVELS_KW])
    feeder = FeederDynamics(controls, torch.tensor([10.0]), 5.0, 1 / 60)
    action = torch.randint(1, 4, (1, 500), generator=torch.Generator().manual_seed(0))
    lived = Batch(
        torch.zeros(1, 500, N_FEATURES),
        action,
        torch.zeros(1, 500),
        torch.zeros(1, 500, N_FEATURES),
        torch.full((1, 500), 6.0),
    )
    twin = imagine(lived, feeder, controls, torch.tensor([[3.0]]), 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(twin.action, action)
    assert torch.equal(twin.others, 3 * controls.gather(1, action))  # three others at the device's power


# --- the comfort guard --------------------------------------------------------------------


def guard_observation(temps: list[float]) -> Observation:
    """Devices at ``temps`` degC, each with the comfort band [20, 23] degC."""
    obs = _observation(len(temps), 0, np.random.default_rng(1))
    return replace(obs, temp_c=np.asarray(temps))


def first_actions(temps: list[float], mode: str = "heat", **params) -> tuple[np.ndarray, object]:
    """The first tick's levels of a fresh learner (seeded alike: epsilon 1, every level drawn at random)."""
    ctx = replace(context(len(temps)), mode=mode)
    learner = make_learner("cooperative-v1", params, ctx)
    return learner.act(guard_observation(temps)), learner


@pytest.mark.parametrize("mode, outside", [("heat", 19.9), ("cool", 23.1)])
def test_the_guard_runs_the_top_level_outside_the_band_where_the_hvac_corrects(mode, outside):
    """Worked by hand, band [20, 23]: the device outside the band on the side its HVAC corrects runs
    level 3; those at the band's edges, inside it and on the other side get the Q-learner's levels."""
    other_side = 23.5 if mode == "heat" else 19.5
    temps = [outside, 20.0, 21.5, 23.0, other_side] * 8
    free, _ = first_actions(temps, mode)
    shielded, learner = first_actions(temps, mode, comfort_guard=True)
    is_outside = np.array(temps) == outside
    assert (free[is_outside] != 3).any(), "the seed must draw a level other than the top for some device"
    assert (shielded[is_outside] == 3).all()
    assert (shielded[~is_outside] == free[~is_outside]).all()
    learner.observe(np.zeros(len(temps)))
    learner.act(guard_observation(temps))
    assert (learner.core.memory.action[:, 0].numpy() == shielded).all(), "the stored level is the one that ran"
    assert learner.update(60.0)["comfort/guarded_share"] == pytest.approx(1 / 5)


def test_the_guard_of_a_device_does_not_depend_on_the_other_devices():
    """Batched equals separate: device 0's guarded level is the same whatever the others' temperatures."""
    alone, _ = first_actions([19.0, 21.0, 21.0], comfort_guard=True)
    among_cold, _ = first_actions([19.0, 15.0, 18.0], comfort_guard=True)
    assert alone[0] == among_cold[0] == 3
    free, _ = first_actions([21.0, 21.0, 21.0], comfort_guard=True)
    free_among_cold, _ = first_actions([21.0, 15.0, 18.0], comfort_guard=True)
    assert free[0] == free_among_cold[0]


def test_without_the_guard_the_learner_is_as_before():
    """Off (the default): no metric of the guard, and a cold device runs the Q-learner's level."""
    temps = [15.0] * 40
    default, learner = first_actions(temps)
    off, _ = first_actions(temps, comfort_guard=False)
    assert (default == off).all() and (default != 3).any()
    assert "comfort/guarded_share" not in learner.metric_keys


@pytest.mark.parametrize("guard", [True, False])
def test_a_transition_stores_the_level_the_guard_forces_at_its_next_observation(guard):
    """Band [20, 23] in heat mode; the next observation finds devices 0 and 2 below the band: the guard will run
    their top level (3) there, and the target must bootstrap from it; the others, and all without the guard, free."""
    _, learner = first_actions([21.0, 19.0, 21.0, 20.0], comfort_guard=guard)
    learner.observe(np.zeros(4))
    learner.act(guard_observation([19.5, 21.0, 15.0, 20.0]))
    expected = [3, -1, 3, -1] if guard else [-1] * 4
    assert learner.core.memory.next_forced[:, 0].tolist() == expected


def test_an_imagined_twin_is_forced_where_its_lived_transition_was():
    """The feeder model keeps the device's own next state (its temperature) as lived, so the guard's verdict too."""
    feeder = FeederDynamics(torch.tensor([LEVELS_KW]), torch.tensor([10.0]), 5.0, 1 / 60)
    g = torch.Generator().manual_seed(0)
    lived = replace(
        feeder_batch([[3, 3, 1]], [[5.0, 11.0, 12.0]]),
        next_obs=torch.randn(1, 3, N_FEATURES, generator=g),
        next_forced=torch.tensor([[3, -1, 3]]),
    )
    twin = imagine(lived, feeder, feeder.controls, torch.tensor([[3.0]]), 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(twin.next_forced, lived.next_forced)
    own_state = [c for c in range(N_FEATURES) if c != FEEDER_COLUMN]
    assert torch.equal(twin.next_obs[..., own_state], lived.next_obs[..., own_state])


@pytest.mark.parametrize("field", ["comfort_guard", "ier_coordination", "double_q", "ier_next_obs"])
def test_a_bad_setting_exits_2_naming_the_field(tmp_path, field):
    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", str(out), "--set", "learner.name=cooperative-v1"]
    result = CliRunner().invoke(main, [*args, "--set", f"learner.params.{field}=sometimes"])
    assert result.exit_code == 2 and f"learner.params.{field}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_the_guarded_learner_passes_the_learner_contract():
    check_learner_contract("cooperative-v1", params={"comfort_guard": True, "batch": 4, "macro_batch": 8})


# --- where IER imagines the others copying the device -------------------------------------


def feeder_batch(own_level: list[list[int]], others: list[list[float]]) -> Batch:
    """Lived transitions (N, B) of reward -1 at price 0, with the devices' levels and the others' kW."""
    n, b = len(own_level), len(own_level[0])
    return Batch(
        torch.zeros(n, b, N_FEATURES),
        torch.tensor(own_level),
        torch.full((n, b), -1.0),
        torch.zeros(n, b, N_FEATURES),
        torch.tensor(others),
    )


@pytest.mark.parametrize("where", ["always", "overloaded", "never"])
def test_the_others_copy_the_device_only_where_the_setting_says(where):
    """Worked by hand: 4 devices on a 10 kW feeder, the device at 3 kW, no exploration, penalty 5 per
    kWh over. Lived light: others 5 kW (8 kW, no overload). Lived overloaded: others 11 kW (14 kW, 4 kW
    over, the device's share 3/14). The others copying it: 12 kW, 2 kW over, its share 1/4. Alone: 3 kW."""
    dt_h = 1 / 60
    feeder = FeederDynamics(torch.tensor([LEVELS_KW]), torch.tensor([10.0]), 5.0, dt_h, where)
    lived = feeder_batch([[3, 3]], [[5.0, 11.0]])
    twin = imagine(lived, feeder, feeder.controls, torch.tensor([[3.0]]), 0.0, torch.Generator().manual_seed(0))
    lived_penalty = [0.0, 5 * 4 * 3 / 14 * dt_h]
    copied = {"others": 9.0, "penalty": 5 * 2 / 4 * dt_h, "load": 1.2}
    alone = {"others": 0.0, "penalty": 0.0, "load": 0.3}
    expected = {"always": (copied, copied), "overloaded": (alone, copied), "never": (alone, alone)}[where]
    assert twin.others[0].tolist() == [e["others"] for e in expected]
    assert twin.reward[0].tolist() == pytest.approx([-1 + p - e["penalty"] for p, e in zip(lived_penalty, expected)])
    assert twin.next_obs[0, :, FEEDER_COLUMN].tolist() == pytest.approx([e["load"] for e in expected])
    assert torch.equal(twin.action, lived.action)


def test_a_devices_coordination_twins_do_not_depend_on_the_other_devices():
    """Batched equals separate: two devices on feeders of 10 and 20 kW imagine together what each imagines alone."""
    controls = torch.tensor([LEVELS_KW, LEVELS_KW])
    capacity, n_others = torch.tensor([10.0, 20.0]), torch.tensor([[3.0], [5.0]])
    lived = feeder_batch([[3, 2, 1], [3, 2, 1]], [[5.0, 11.0, 12.0], [18.0, 5.0, 20.0]])
    feeder = FeederDynamics(controls, capacity, 5.0, 1 / 60, "overloaded")
    both = imagine(lived, feeder, controls, n_others, 0.0, torch.Generator().manual_seed(0))
    for i in range(2):
        one = FeederDynamics(controls[i : i + 1], capacity[i : i + 1], 5.0, 1 / 60, "overloaded")
        rows_i = Batch(*(getattr(lived, f)[i : i + 1] for f in ReplayMemory.FIELDS))
        alone = imagine(rows_i, one, controls[i : i + 1], n_others[i : i + 1], 0.0, torch.Generator().manual_seed(0))
        for f in ReplayMemory.FIELDS:
            assert torch.equal(getattr(both, f)[i : i + 1], getattr(alone, f)), f


class WithoutCoupling:
    """The feeder model as it was before ``ier_coordination``: it says nothing of where the devices interact."""

    def __init__(self, feeder: FeederDynamics) -> None:
        self.coordination, self.imagine = feeder.coordination, feeder.imagine


def test_by_default_the_twins_are_those_of_the_model_that_knows_no_coupling():
    """Off (``always``, the default) is the old behaviour: the same twins, draw for draw, at any exploration."""
    assert CooperativeLearnerConfig().ier_coordination == "always"
    controls = torch.tensor([LEVELS_KW, LEVELS_KW])
    feeder = FeederDynamics(controls, torch.tensor([10.0, 20.0]), 5.0, 1 / 60)
    g = torch.Generator().manual_seed(3)
    lived = feeder_batch(
        torch.randint(4, (2, 200), generator=g).tolist(), (torch.rand(2, 200, generator=g) * 20).tolist()
    )
    for seed in range(3):
        new = imagine(lived, feeder, controls, torch.tensor([[3.0]]), 0.3, torch.Generator().manual_seed(seed))
        old = imagine(
            lived, WithoutCoupling(feeder), controls, torch.tensor([[3.0]]), 0.3, torch.Generator().manual_seed(seed)
        )
        for f in ReplayMemory.FIELDS:
            assert torch.equal(getattr(new, f), getattr(old, f)), f


def test_the_learner_hands_its_setting_to_the_feeder_model():
    learner = make_learner("cooperative-v1", {"ier_coordination": "never"}, context(2))
    assert learner.core.dynamics.ier_coordination == "never"
