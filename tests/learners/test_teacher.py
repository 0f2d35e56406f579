"""Learning from each device's own planner (``learner.params.teacher: planner``, :mod:`fleet.learners.teacher`)."""

import copy
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from devices.building import rc_step
from fleet import statefile
from fleet.errors import ConfigError
from fleet.learners import make_learner
from fleet.learners.base import Deliveries, Lookahead
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import flatten
from fleet.learners.teacher import NO_LABEL
from fleet.testing import _observation, check_learner_contract
from tests.learners.test_comm import wire
from tests.learners.test_planner import DT, LEVELS_KW, context, houses, outdoor_at

TEACHER = {"name": "planner", "planner": {"identification": {"min_data": "12h"}}}
"""A planner that trusts its model after 12 hours of data (48 ticks of 15 minutes)."""


def learner(n: int, name: str = "independent-v1", **params):
    return make_learner(name, {"n_steps": 8, "teacher": TEACHER, **params}, context(n))


class Street:
    """Houses heated by whatever acts on them, read with sensor noise, over a winter day's
    outdoor cycle and a perfect forecast; :meth:`observe` gives the observation of the next tick."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.h, self.n, self.tick = houses(n, self.rng), n, 0
        self.temp = np.full(n, 21.0)

    def observe(self, hours: tuple[float, ...]):
        now = self.tick * DT / 3600
        obs = _observation(self.n, self.tick, self.rng, hours)
        ahead = np.tile(outdoor_at(now + np.asarray(obs.forecast_lead_h)), (self.n, 1))
        reading = self.temp + self.rng.normal(0, 0.1, self.n)
        return replace(obs, temp_c=reading, outdoor_c=np.full(self.n, outdoor_at(now)), outdoor_ahead=ahead)

    def step(self, obs, level: np.ndarray) -> None:
        h = self.h
        self.temp = rc_step(self.temp, obs.outdoor_c, h["cop"] * LEVELS_KW[level] + h["q"], h["r"], h["c"], DT / 3600)
        self.tick += 1


def drive(fleet, street: Street, ticks: int, singles=(), relay=None) -> list[np.ndarray]:
    """Run ``ticks`` ticks with ``fleet`` acting on the street; each of ``singles`` (learners of one
    device) acts on its own device's observation beside it. Every learner updates on its period, and
    ``relay(fleet)``, if given, then carries the fleet's messages. Returns the fleet's levels (N,) per tick."""
    levels = []
    for _ in range(ticks):
        obs = street.observe(fleet.lookahead_h)
        levels.append(fleet.act(obs))
        for i, single in enumerate(singles):
            single.act(row(obs, i))
        street.step(obs, levels[-1])
        for each in (fleet, *singles):
            each.observe(np.zeros(each.ctx.n_devices))
            if street.tick % each.update_every == 0:
                each.update(street.tick * DT)
        if relay is not None and street.tick % fleet.update_every == 0:
            relay(fleet)
    return levels


class Cloud:
    """Carries a centralized fleet's messages through the codec, lossless: every device's experience to the
    cloud (endpoint N), the cloud's policy to every device; keeps the experience messages' arrays as decoded."""

    def __init__(self) -> None:
        self.experience: list = []

    def __call__(self, fleet) -> None:
        n = fleet.ctx.n_devices
        for kind, pub in fleet.outbox(np.ones(n, bool)):
            arrays = wire(pub)
            if kind == "experience":
                self.experience.append(arrays)
                got = Deliveries.one_message_each(
                    np.full(len(pub.sender), n), pub.sender, arrays, np.zeros(len(pub.sender))
                )
            else:
                got = Deliveries(np.arange(n), np.full(n, n), np.zeros(n), np.zeros(n, int), arrays)
            fleet.inbox(kind, got)


def row(obs, i: int):
    """Device ``i``'s observation, as a fleet of one device sees it."""
    n = len(obs.temp_c)
    per_device = {
        f.name: value[i : i + 1]
        for f in fields(obs)
        if isinstance(value := getattr(obs, f.name), np.ndarray) and len(value) == n
    }
    ahead = tuple(getattr(obs.lookahead, key)[i : i + 1] for key in ("band_lo", "band_hi", "price"))
    return replace(obs, **per_device, lookahead=Lookahead(obs.lookahead.hours, lambda: ahead))


def test_no_step_before_the_planner_has_a_model_then_the_actor_learns_its_levels():
    fleet = learner(4)
    actor = flatten(fleet.core.actor.parameters)
    street = Street(4, 0)
    drive(fleet, street, 40)  # 10 hours: less than min_data
    assert not fleet.teacher.planner.planning.any()
    assert all((label == NO_LABEL).all() for label in fleet._labels)
    assert torch.equal(flatten(fleet.core.actor.parameters), actor)  # not a bit moved
    drive(fleet, street, 2 * 96)
    assert fleet.teacher.planner.planning.all()
    assert (flatten(fleet.core.actor.parameters) - actor).abs().max() > 1e-3


def test_the_policy_acts_greedily_and_the_critic_is_not_trained():
    fleet = learner(3)
    critic = flatten(fleet.core.critic.parameters)
    street = Street(3, 1)
    drive(fleet, street, 96)
    obs = street.observe(fleet.lookahead_h)
    expected = fleet.core.actor(fleet.adapter.features(obs, "cpu").unsqueeze(1)).squeeze(1).argmax(-1).numpy()
    np.testing.assert_array_equal(fleet.act(obs), expected)
    assert torch.equal(flatten(fleet.core.critic.parameters), critic)


def test_the_planner_identifies_the_house_from_the_levels_the_policy_runs():
    fleet, street = learner(3), Street(3, 4)
    drive(fleet, street, 60)  # the planner has a model: its advice is not the thermostat's
    obs = street.observe(fleet.lookahead_h)
    level = fleet.act(obs)
    np.testing.assert_array_equal(fleet.teacher.planner.ident.pending[:, 1], LEVELS_KW[level])  # the power run


def test_the_batched_learner_equals_separate_learners_of_one_device():
    n = 3
    batched, singles = learner(n), [learner(1) for _ in range(n)]
    drive(batched, Street(n, 2), 2 * 96, singles)
    assert batched.teacher.planner.planning.all()
    labels = torch.cat([torch.stack(single._labels) for single in singles], dim=1)
    torch.testing.assert_close(torch.stack(batched._labels), labels)
    # float32 sums in another order; Adam turns a gradient differing in its last bits into a step
    # differing by up to ~1e-5 (as tests/learners/test_batching.py)
    expected = torch.cat([single.core.flat() for single in singles])
    torch.testing.assert_close(batched.core.flat(), expected, atol=2e-5, rtol=1e-5)
    assert not torch.allclose(batched.core.flat()[0], batched.core.flat()[1])  # the devices learned apart


def resumed(saved, name: str, tmp_path):
    """A fresh learner ``name`` of ``saved``'s devices loaded from ``saved``'s state file."""
    path = tmp_path / "learner.safetensors"
    with path.open("wb") as f:
        statefile.save(f.write, "learner", saved.state_dict())
    restored = learner(saved.ctx.n_devices, name)
    restored.load_state_dict(statefile.load(path, "learner", 1 << 30))
    return restored


def test_a_checkpoint_resumes_exactly_mid_rollout(tmp_path):
    saved, street = learner(4, "diffusion-v1"), Street(4, 3)
    drive(saved, street, 60 + 3)  # the planner has a model; three ticks into a rollout
    assert saved.teacher.planner.planning.any()
    restored, twin = resumed(saved, "diffusion-v1", tmp_path), copy.deepcopy(street)
    a, b = drive(saved, street, 96), drive(restored, twin, 96)
    assert all((x == y).all() for x, y in zip(a, b))
    assert torch.equal(saved.core.flat(), restored.core.flat())
    np.testing.assert_array_equal(saved.teacher.planner.values, restored.teacher.planner.values)


def test_centralized_devices_upload_their_planners_labels_and_get_the_policy_the_cloud_imitated():
    fleet, cloud = learner(4, "centralized-v1"), Cloud()
    given, label = [], fleet.teacher.label
    fleet.teacher.label = lambda obs, level: given.append(label(obs, level)) or given[-1]
    start = fleet.cloud.flat()
    street = Street(4, 5)
    drive(fleet, street, 40, relay=cloud)  # 10 hours: less than min_data, no labels yet
    assert cloud.experience and all((arrays[3] == NO_LABEL).all() for arrays in cloud.experience)
    assert torch.equal(fleet.cloud.flat(), start) and fleet.cloud_updates == 0  # no step, nothing broadcast
    drive(fleet, street, 2 * 96, relay=cloud)
    assert fleet.teacher.planner.planning.all()
    # the labels travel: the fourth array of the experience messages, as the cloud decodes them, is the
    # devices' planners' levels, tick by tick
    received = np.concatenate([arrays[3] for arrays in cloud.experience], axis=1)  # (N, ticks uploaded)
    np.testing.assert_array_equal(received, np.stack(given[: received.shape[1]]).T)
    assert (received >= 0).mean() > 0.5
    assert (fleet.cloud.flat() - start).abs().max() > 1e-3
    torch.testing.assert_close(fleet.core.flat(), fleet.cloud.flat().expand(4, -1))  # the broadcast arrived


def pool(n_devices: int, steps: int, labels: np.ndarray, seed: int = 0) -> Deliveries:
    """Experience messages of ``n_devices`` devices of ``steps`` ticks with ``labels`` (D, T) as received."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_devices, steps + 1, N_FEATURES)).astype(np.float32)
    actions = rng.integers(0, 4, (n_devices, steps)).astype(np.float32)
    rewards = rng.normal(size=(n_devices, steps)).astype(np.float32)
    arrays = [obs, actions, rewards, labels.astype(np.float32)]
    return Deliveries.one_message_each(np.full(n_devices, 5), np.arange(n_devices), arrays, np.zeros(n_devices))


def test_the_cloud_drops_and_counts_labels_outside_the_levels_and_imitates_the_pooled_rest():
    fleet = learner(5, "centralized-v1")
    labels = np.array([[0, 3, -1, 7, 1.5, 2], [np.nan, -2, 1, 1, 4, -1], [2, 2, 0, -1, 3, 1]])
    got = pool(3, 6, labels)
    clean = np.where(np.isin(labels, [-1, 0, 1, 2, 3]), labels, -1)  # 7, 1.5, nan, -2 and 4 are no level
    expected = copy.deepcopy(fleet.cloud)
    obs = torch.as_tensor(got.arrays[0][:, :-1]).reshape(1, -1, N_FEATURES)  # one network: every device's samples
    wanted = expected.imitate(obs, torch.as_tensor(clean).long().reshape(1, -1))
    fleet.inbox("experience", got)
    metrics = fleet.update(DT)
    assert metrics["teacher/dropped_labels"] == 5
    assert metrics["teacher/agreement"] == pytest.approx(wanted["teacher/agreement"])
    # float32 sums over the pool in another order
    torch.testing.assert_close(fleet.cloud.flat(), expected.flat(), rtol=1e-5, atol=1e-6)
    assert [kind for kind, _ in fleet.outbox(np.ones(5, bool))] == ["params"]


def test_the_cloud_takes_no_step_and_sends_nothing_without_a_label():
    fleet = learner(5, "centralized-v1")
    start = fleet.cloud.flat()
    fleet.inbox("experience", pool(2, 4, np.array([[-1, -1, 9, -1], [-1, np.inf, -1, -1]])))
    metrics = fleet.update(DT)
    assert metrics == {"teacher/dropped_labels": 2}
    assert torch.equal(fleet.cloud.flat(), start) and fleet.cloud_updates == 0
    assert fleet.outbox(np.ones(5, bool)) == []


def test_a_centralized_checkpoint_resumes_exactly_mid_rollout(tmp_path):
    saved, street, cloud = learner(4, "centralized-v1"), Street(4, 6), Cloud()
    drive(saved, street, 80 + 3, relay=cloud)  # the cloud has imitated; three ticks into a rollout
    assert saved.teacher.planner.planning.any() and saved.cloud_updates > 0
    saved.inbox("experience", pool(4, 8, np.full((4, 8), 9)))  # received, not yet learned from
    restored, twin = resumed(saved, "centralized-v1", tmp_path), copy.deepcopy(street)
    assert restored.dropped_labels == saved.dropped_labels == 4 * 8
    a, b = drive(saved, street, 96, relay=Cloud()), drive(restored, twin, 96, relay=Cloud())
    assert all((x == y).all() for x, y in zip(a, b))
    assert torch.equal(saved.cloud.flat(), restored.cloud.flat())
    assert torch.equal(saved.core.flat(), restored.core.flat())


@pytest.mark.parametrize("name", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_the_contract_holds_with_a_teacher(name):
    teacher = {"name": "planner", "planner": {"identification": {"min_data": "2h"}}}
    check_learner_contract(name, params={"teacher": teacher})


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("centralized-v1", {"discomfort_limit": {"degh_per_day": 1.0}}, "unset discomfort_limit"),
        ("independent-v1", {"frozen": True}, "unset frozen"),
        ("independent-v1", {"discomfort_limit": {"degh_per_day": 1.0}}, "unset discomfort_limit"),
    ],
)
def test_a_teacher_where_it_cannot_teach_is_refused_naming_the_field(name, params, message):
    with pytest.raises(ConfigError, match=message):
        make_learner(name, {"teacher": "planner", **params}, context(2))


CLOUD = ("params_dtype=float16", "teacher.name=planner")
"""A centralized learner with a teacher whose policy messages fit small-v1's links."""


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("independent-v1", ["teacher=oracle"], "learner.params.teacher.name"),
        (
            "independent-v1",
            ["teacher.name=planner", "teacher.planner.horizon=20min"],
            "learner.params.teacher.planner.horizon: 1200 s",
        ),
        ("centralized-v1", [*CLOUD, "teacher.planner.margin=1"], "learner.params.teacher.planner.margin: unknown"),
        ("centralized-v1", [*CLOUD, "discomfort_limit.degh_per_day=1"], "unset discomfort_limit"),
    ],
)
def test_the_cli_refuses_a_bad_teacher_with_exit_2_and_writes_nothing(tmp_path, name, settings, message):
    from click.testing import CliRunner

    from fleet.cli import main

    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", str(out), "--set", f"learner.name={name}"]
    for setting in settings:
        args += ["--set", f"learner.params.{setting}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
