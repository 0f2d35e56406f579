"""The cooperative-control core: batching, replay memory, TER's sampling law, IER, IQL, config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from fleet import statefile
from fleet.config import format_validation_error
from fleet.errors import ConfigError
from fleet.learners.cooperative.config import CooperativeConfig
from fleet.learners.cooperative.core import CooperativeQ, iql_rates
from fleet.learners.cooperative.imagine import (
    ALL_COPY,
    ALONE,
    COPY_MEAN,
    IDLE,
    draw_scenarios,
    imagine,
    imagined_controls,
    impact,
)
from fleet.learners.cooperative.replay import Batch, ReplayMemory

F, A = 3, 3


class Linear:
    """x' = x + gain * (own + others) in column 0 of the observation; reward -(x')^2."""

    gain = 0.5
    coordination = (IDLE, COPY_MEAN, ALL_COPY)

    def imagine(self, lived, own, others):
        nxt = lived.obs.clone()
        nxt[..., 0] = lived.obs[..., 0] + self.gain * (own + others)
        return nxt, -(nxt[..., 0] ** 2)


def make_core(n: int, seed: int = 0, **params) -> CooperativeQ:
    cfg = CooperativeConfig(**{"hidden": 8, "batch": 4, "macro_batch": 8, "capacity": 16, **params})
    controls = torch.tensor([[-1.0, 0.0, 1.0]]).repeat(n, 1) * torch.arange(1, n + 1).unsqueeze(1)
    gen = torch.Generator().manual_seed(seed)
    return CooperativeQ(cfg, controls, torch.full((n,), 3), F, 60.0, gen, Linear())


def random_batch(n: int, b: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n, b, F, generator=g),
        torch.randint(A, (n, b), generator=g),
        torch.randn(n, b, generator=g),
        torch.randn(n, b, F, generator=g),
        torch.randn(n, b, generator=g),
        torch.randint(-1, A, (n, b), generator=g),  # a shield forces some next actions
    )


def rows(batch: Batch, i: int) -> Batch:
    return Batch(*(getattr(batch, f)[i : i + 1] for f in ReplayMemory.FIELDS))


# --- batching --------------------------------------------------------------------------------


@pytest.mark.parametrize("double_q", [False, True])
def test_batched_q_networks_equal_separate_per_device_ones(double_q):
    """Three devices stacked learn exactly what three single-device learners learn on the same data."""
    fleet = make_core(3, double_q=double_q)
    singles = [make_core(1, double_q=double_q) for _ in range(3)]
    for i, single in enumerate(singles):
        single.controls = fleet.controls[i : i + 1]
        with torch.no_grad():
            for p, q in zip(
                single.q.parameters + single.target.parameters, fleet.q.parameters + fleet.target.parameters
            ):
                p.copy_(q[i : i + 1])
    for step in range(3):
        batch = random_batch(3, 6, step)
        fleet.learn(batch)
        for i, single in enumerate(singles):
            single.learn(rows(batch, i))
    obs = torch.randn(3, 5, F)
    for i, single in enumerate(singles):
        for p, q in zip(single.q.parameters, fleet.q.parameters):
            torch.testing.assert_close(p[0], q[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(single.q(obs[i : i + 1])[0], fleet.q(obs)[i], rtol=1e-5, atol=1e-6)


# --- the TD target under a shield ------------------------------------------------------------


def toy_core(q_next: list[float], online: list[float] | None = None, **params) -> CooperativeQ:
    """One device with 2 levels (0 and 1 kW) whose target network says Q(s', .) = ``q_next`` at every s', and
    its online network ``online`` (if given)."""
    cfg = CooperativeConfig(hidden=8, batch=2, macro_batch=2, capacity=4, ier=False, **params)
    core = CooperativeQ(cfg, torch.tensor([[0.0, 1.0]]), torch.ones(1), F, 3600.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for net, values in ((core.target, q_next), (core.q, online)):
            if values is not None:
                net.weights[-1].zero_()
                net.biases[-1].copy_(torch.tensor([values]))
    return core


def toy_batch(next_forced: list[int] | None) -> Batch:
    """Two transitions of reward -1 from the same state; ``next_forced`` None: no shield."""
    forced = None if next_forced is None else torch.tensor([next_forced])
    return Batch(
        torch.zeros(1, 2, F),
        torch.tensor([[0, 1]]),
        torch.full((1, 2), -1.0),
        torch.ones(1, 2, F),
        torch.zeros(1, 2),
        forced,
    )


def test_where_the_shield_forces_the_next_level_the_target_bootstraps_from_it():
    """Q(s', 0) = 5, Q(s', 1) = 2. Free at s': -1 + gamma 5. The guard forces level 1 at s': -1 + gamma 2,
    though level 0 looks better (its value at a guarded state was never learned from lived data)."""
    core = toy_core([5.0, 2.0])
    gamma = core.gamma
    assert core.td_target(toy_batch([-1, 1]))[0].tolist() == pytest.approx([-1 + gamma * 5, -1 + gamma * 2])
    assert core.td_target(toy_batch(None))[0].tolist() == pytest.approx([-1 + gamma * 5, -1 + gamma * 5])


@pytest.mark.parametrize("double_q", [False, True])
def test_double_q_values_the_online_networks_pick_by_the_target_network(double_q):
    """Target Q(s', .) = (5, 2), online Q(s', .) = (0, 1). Double Q: the online network picks level 1, the target
    values it, -1 + gamma 2 (plain: -1 + gamma 5). Where the shield forces level 0, both take it: -1 + gamma 5."""
    core = toy_core([5.0, 2.0], online=[0.0, 1.0], double_q=double_q)
    gamma, free = core.gamma, -1 + core.gamma * (2.0 if double_q else 5.0)
    assert core.td_target(toy_batch([-1, 0]))[0].tolist() == pytest.approx([free, -1 + gamma * 5])


def test_the_target_is_as_before_double_q_bit_for_bit():
    """Off (the default): exactly the shielded max of before double_q, forced or free."""
    core = make_core(3)
    assert not core.cfg.double_q
    batch = random_batch(3, 6, 0)
    q_next, forced = core.target(batch.next_obs), batch.next_forced
    shielded = q_next.gather(-1, forced.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(
        core.td_target(batch), batch.reward + core.gamma * torch.where(forced >= 0, shielded, q_next.amax(-1))
    )


def test_without_a_shield_the_target_is_the_max_bit_for_bit():
    """No shield (the default, -1 everywhere): exactly r + gamma max_a' Q_target(s', a'), as before the shield."""
    core = make_core(3)
    batch = random_batch(3, 6, 0)
    free = Batch(*(getattr(batch, f) for f in ReplayMemory.FIELDS[:-1]))
    assert (free.next_forced == -1).all()
    old = free.reward + core.gamma * core.target(free.next_obs).amax(-1)
    assert torch.equal(core.td_target(free), old)


# --- replay memory ---------------------------------------------------------------------------


def test_replay_memory_is_bounded_and_keeps_the_newest():
    mem = ReplayMemory(2, 5, F, "cpu")
    nbytes = mem.nbytes
    for k in range(12):
        mem.push(
            Batch(
                torch.full((2, 1, F), k),
                torch.zeros(2, 1, dtype=torch.long),
                torch.full((2, 1), float(k)),
                torch.zeros(2, 1, F),
                torch.zeros(2, 1),
            )
        )
    assert mem.size == 5 and mem.nbytes == nbytes
    assert sorted(mem.reward[0].tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]
    slots = torch.arange(5).repeat(2, 1)
    assert (mem.ages(slots) == 11 - mem.reward.long()).all()  # written k: 11 - k writes since


def expected_picks(q: int, m: int, b: int, t: int) -> tuple[float, float]:
    """Mean and variance of the times the slot with q newer slots (of m) is in the mini-batch:
    x newer draws and y draws of the slot among b uniform draws (multinomial); it is picked
    max(0, min(y, t - x)) times."""
    mean = sq = 0.0
    p_newer, p_self = q / m, 1 / m
    for x in range(b + 1):
        for y in range(b + 1 - x):
            prob = (
                math.factorial(b)
                / (math.factorial(x) * math.factorial(y) * math.factorial(b - x - y))
                * p_newer**x
                * p_self**y
                * (1 - p_newer - p_self) ** (b - x - y)
            )
            picks = max(0, min(y, t - x))
            mean += prob * picks
            sq += prob * picks**2
    return mean, sq - mean**2


@pytest.mark.parametrize("b", [3, 5, 12])
def test_ter_samples_the_newest_of_a_uniform_macro_batch_by_its_law(b):
    """Per age, the mean number of picks over 20,000 devices lies within 4.5 standard errors of theory."""
    m, t, n = 8, 3, 20_000
    mem = ReplayMemory(n, m, 1, "cpu")
    mem.count = 11  # wrapped around: ages are not slot numbers
    slots = mem.temporal(t, b, torch.Generator().manual_seed(b))
    ages = mem.ages(slots)
    counts = torch.stack([(ages == q).sum(1) for q in range(m)], 1).double()  # (n, m) picks per device and age
    theory = [expected_picks(q, m, b, t) for q in range(m)]
    assert sum(mean for mean, _ in theory) == pytest.approx(t)
    if b == t:
        assert all(mean == pytest.approx(t / m) for mean, _ in theory)  # uniform
    for q, (mean, var) in enumerate(theory):
        assert abs(counts[:, q].mean() - mean) < 4.5 * math.sqrt(var / n), f"age {q}"


def test_macro_batch_grows_from_the_batch_to_its_largest_as_exploration_ends():
    cfg = CooperativeConfig(batch=32, macro_batch=128)
    assert (cfg.macro_size(1.0), cfg.macro_size(0.5), cfg.macro_size(0.0)) == (32, 80, 128)


# --- IER ---------------------------------------------------------------------------------------


def test_imagined_controls_of_each_scenario():
    """Controls -1, 0, 1; three others whose controls sum to 2 (mean 2/3: nearest control 1)."""
    controls = torch.tensor([[-1.0, 0.0, 1.0]])
    action = torch.full((1, 4), 0)  # the device pushed -1
    others = torch.full((1, 4), 2.0)
    scenario = torch.tensor([[ALONE, IDLE, COPY_MEAN, ALL_COPY]])
    new_action, new_others = imagined_controls(scenario, action, others, controls, torch.tensor([[3.0]]))
    assert new_action.tolist() == [[0, 1, 2, 0]]
    assert new_others.tolist() == [[0.0, 2.0, 2.0, -3.0]]


def test_imagined_transitions_follow_the_known_dynamics():
    controls = torch.tensor([[-1.0, 0.0, 1.0]])
    batch = Batch(
        torch.tensor([[[1.0, 0, 0]]]),
        torch.tensor([[2]]),
        torch.zeros(1, 1),
        torch.zeros(1, 1, F),
        torch.tensor([[3.0]]),
    )
    twin = imagine(batch, Linear(), controls, torch.tensor([[3.0]]), 1.0, torch.Generator())  # epsilon 1: alone
    assert twin.action.tolist() == [[2]] and twin.others.tolist() == [[0.0]]
    assert twin.next_obs[0, 0, 0] == pytest.approx(1.5) and twin.reward.item() == pytest.approx(-2.25)


@pytest.mark.parametrize("next_obs", ["imagined", "lived"])
def test_a_twin_bootstraps_from_the_imagined_or_the_lived_next_observation(next_obs):
    """As above (alone: x' = 1 + 0.5 = 1.5, reward -2.25), the lived next observation x' = 7: the reward is
    imagined either way, the next observation only with ``imagined``."""
    controls = torch.tensor([[-1.0, 0.0, 1.0]])
    lived_next = torch.full((1, 1, F), 7.0)
    batch = Batch(
        torch.tensor([[[1.0, 0, 0]]]), torch.tensor([[2]]), torch.zeros(1, 1), lived_next, torch.tensor([[3.0]])
    )
    twin = imagine(batch, Linear(), controls, torch.tensor([[3.0]]), 1.0, torch.Generator(), next_obs)
    assert twin.reward.item() == pytest.approx(-2.25)
    assert twin.next_obs[0, 0, 0] == pytest.approx(1.5 if next_obs == "imagined" else 7.0)


def test_a_core_hands_its_twins_next_observation_setting_to_imagine():
    """Sampled with IER at epsilon 1 (every twin alone), a core with ``ier_next_obs: lived`` learns each twin
    with its lived next observation; by default with the imagined one, draw for draw the same twins otherwise."""
    cores = {k: make_core(2, ier_next_obs=k) for k in ("imagined", "lived")}
    for core in cores.values():
        drive(core, 12, seed=5)
    batches = {k: core.sample() for k, core in cores.items()}
    lived, twins = (batches["lived"].next_obs[:, :4], batches["lived"].next_obs[:, 4:])
    assert torch.equal(twins, lived)
    imagined = batches["imagined"]
    for f in ("obs", "action", "reward", "others", "next_forced"):
        assert torch.equal(getattr(imagined, f), getattr(batches["lived"], f)), f
    assert not torch.equal(imagined.next_obs[:, 4:], imagined.next_obs[:, :4])


@pytest.mark.parametrize("epsilon", [0.2, 0.7])
@pytest.mark.parametrize("kinds", [(IDLE, COPY_MEAN, ALL_COPY), (ALL_COPY,)])
def test_scenarios_are_alone_with_probability_epsilon_and_coordinated_otherwise(epsilon, kinds):
    n = 60_000
    psi = torch.ones(1, n)
    psi[0, : n // 2] = 0  # no joint control to coordinate: always alone
    s = draw_scenarios(psi, epsilon, torch.Generator().manual_seed(1), kinds)
    assert (s[0, : n // 2] == ALONE).all()
    coordinated = s[0, n // 2 :]
    half = n // 2
    for kind, p in (
        (ALONE, epsilon),
        *((k, (1 - epsilon) / len(kinds) * (k in kinds)) for k in (IDLE, COPY_MEAN, ALL_COPY)),
    ):
        share = float((coordinated == kind).double().mean())
        assert abs(share - p) <= 4.5 * math.sqrt(p * (1 - p) / half), kind


# --- IQL ---------------------------------------------------------------------------------------


def test_impact_is_a_multiple_of_the_fair_share():
    own, others, n_others = torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([3.0, 0.0, 2.0, 0.0]), torch.tensor(3.0)
    assert impact(own, others, n_others).tolist() == [1.0, 4.0, 0.0, 1.0]  # share 1/4, 1, 0, fair (nobody acts)


def test_iql_rates_by_outcome_impact_and_coordination():
    cfg = CooperativeConfig(alpha=0.5, sigma=0.1, beta=0.01, lambda_low=0.5, lambda_high=1.5)
    cases = [  # (delta, impact, psi) -> rate
        ((1.0, 2.0, 0.0), 0.5),  # good, credited
        ((1.0, 1.0, 0.0), 0.1),  # good, shared
        ((1.0, 1.0, 1.0), 0.5),  # good, shared, coordinated
        ((1.0, 0.2, 1.0), 0.01),  # good, not credited
        ((-1.0, 2.0, -1.0), 0.1),  # bad, responsible
        ((-1.0, 2.0, 1.0), 0.5),  # bad, responsible, coordinated
        ((-1.0, 0.2, 0.0), 0.01),  # bad, not responsible
    ]
    delta, lam, psi = (torch.tensor(c) for c in zip(*(args for args, _ in cases)))
    assert iql_rates(delta, lam, psi, cfg).tolist() == pytest.approx([rate for _, rate in cases])


@pytest.mark.parametrize("idle_impact, idle_rate", [(0.0, 0.01), (1.0, 0.1)])
def test_an_idle_device_is_learned_at_beta_while_others_act_unless_idling_counts_as_a_fair_share(
    idle_impact, idle_rate
):
    """Rates relative to alpha = 0.5 (beta 0.01, sigma 0.1), one device of 4 (controls -1, 0, 1)."""
    core = make_core(1, idle_impact=idle_impact, alpha=0.5, sigma=0.1, beta=0.01)
    cases = [  # (action, others, delta) -> rate
        ((1, 2.0, 1.0), idle_rate),  # idle while others act, good
        ((1, -2.0, -1.0), idle_rate),  # idle while others act, bad
        ((1, 0.0, 1.0), 0.1),  # nobody acts: a fair share, shared, psi = 0
        ((2, 1.0, 1.0), 0.5),  # pushes with the others: share 1/2 of 4 = 2, credited
    ]
    action, others, delta = (torch.tensor([c]) for c in zip(*(args for args, _ in cases)))
    batch = Batch(torch.zeros(1, 4, F), action, torch.zeros(1, 4), torch.zeros(1, 4, F), others)
    assert (core._weights(batch, delta)[0] * 0.5).tolist() == pytest.approx([rate for _, rate in cases])


# --- config and state --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, field",
    [
        ({"beta": 0.2, "sigma": 0.1}, "beta, sigma, alpha"),
        ({"sigma": 0.6}, "beta, sigma, alpha"),
        ({"lambda_low": 2.0, "lambda_high": 1.0}, "lambda_low"),
        ({"capacity": 16, "batch": 32, "macro_batch": 32}, "capacity"),
        ({"macro_batch": 16}, "macro_batch"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_config_errors_name_the_field(params, field):
    with pytest.raises(ValidationError) as err:
        CooperativeConfig(**params)
    error = format_validation_error(err.value, "learner.params")
    assert isinstance(error, ConfigError) and field in str(error)


def test_discount_and_exploration_are_set_in_time():
    cfg = CooperativeConfig(discount_horizon="1h", explore_for="2h", epsilon_min=0.1)
    assert cfg.gamma(900.0) == pytest.approx(math.exp(-0.25))
    assert cfg.gamma(60.0) ** 15 == pytest.approx(cfg.gamma(900.0))  # the same horizon at any period
    with pytest.raises(ConfigError, match="learner.params.discount_horizon"):
        cfg.gamma(cfg.discount_horizon + 1.0)  # a horizon shorter than the control period
    assert (cfg.epsilon(0.0), cfg.epsilon(3600.0), cfg.epsilon(1e6)) == pytest.approx((1.0, 0.55, 0.1))


def drive(core: CooperativeQ, ticks: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    obs, actions = torch.randn(core.controls.shape[0], F, generator=g), []
    for _ in range(ticks):
        a = core.act(obs)
        nxt = torch.randn(obs.shape, generator=g)
        core.store(
            Batch(
                obs.unsqueeze(1),
                a.unsqueeze(1),
                torch.randn(len(a), 1, generator=g),
                nxt.unsqueeze(1),
                torch.randn(len(a), 1, generator=g),
                torch.randint(-1, A, (len(a), 1), generator=g),
            )
        )
        core.update()
        obs, actions = nxt, actions + [a.tolist()]
    return actions


def test_state_round_trip_continues_bit_identically(tmp_path: Path):
    core = make_core(3, seed=1)
    drive(core, 20, seed=2)
    path = tmp_path / "core.safetensors"
    with path.open("wb") as f:
        statefile.save(f.write, "learner", core.state_dict())
    restored = make_core(3, seed=9)
    restored.load_state_dict(statefile.load(path, "learner", 1 << 30))
    assert torch.equal(restored.memory.next_forced, core.memory.next_forced)
    assert drive(core, 20, seed=3) == drive(restored, 20, seed=3)
    for p, q in zip(core.q.parameters, restored.q.parameters):
        assert torch.equal(p, q)


def test_a_state_without_the_shields_forced_actions_is_refused_naming_the_entry():
    """Saved before ``next_forced`` was stored: its transitions do not say where a shield forced the next action."""
    core = make_core(2)
    drive(core, 6, seed=2)
    state = core.state_dict()
    del state["memory"]["next_forced"]
    with pytest.raises(statefile.StateMismatch, match=r"memory\.next_forced: missing"):
        make_core(2).load_state_dict(state)
    state["memory"]["next_forced"] = core.memory.next_forced.float()
    with pytest.raises(statefile.StateMismatch, match=r"memory\.next_forced: dtype torch.float32"):
        make_core(2).load_state_dict(state)
