"""Generic cores: the learners take plain (N, obs_dim) observations through an adapter from
their context, and know nothing of thermostats themselves."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fleet.learners import LearnerContext, make_learner
from fleet.learners.adapters import PlainAdapter
from fleet.learners.features import LAYOUT, N_FEATURES, THERMOSTAT
from fleet.testing import _context


def test_the_learner_modules_import_no_thermostat_features():
    code = (
        "import sys\n"
        "import fleet.learners.actor_critic, fleet.learners.centralized, fleet.learners.stacked\n"
        "print('fleet.learners.features' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_a_context_observes_thermostat_features_by_default():
    ctx = _context(3, 0)
    assert ctx.adapter is THERMOSTAT and (ctx.adapter.layout, ctx.adapter.n_features) == (LAYOUT, N_FEATURES)


@pytest.mark.parametrize("name", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_every_learner_acts_and_learns_on_plain_observations(name):
    """A bandit of 3 devices with 2 features: the reward is 1 for action argmax(obs). Independent
    and diffusion learn on their own; centralized is only driven (its policy comes through messages)."""
    n, dim = 3, 2
    ctx = _context(n, 0)
    ctx = LearnerContext(n, 2, "heat", np.random.default_rng(0), topology=ctx.topology, adapter=PlainAdapter(dim))
    learner = make_learner(name, {"n_steps": 4, "hidden": 8, "discount_horizon": "60s"}, ctx)
    assert learner.core.actor.sizes == [dim, 8, 8, 2] and learner.core.critic.sizes == [dim, 8, 8, 1]
    rng = np.random.default_rng(1)
    before = learner.core.flat().clone()
    for _ in range(3 * learner.update_every):
        obs = np.eye(dim, dtype=np.float32)[rng.integers(0, dim, n)]
        action = learner.act(obs)
        assert action.shape == (n,) and set(action) <= {0, 1}
        learner.observe((action == obs.argmax(1)).astype(np.float32))
    learner.update(180.0)
    if name != "centralized-v1":
        assert not torch.equal(learner.core.flat(), before)


def test_plain_observations_of_another_width_are_refused_naming_the_shape():
    with pytest.raises(ValueError, match=r"observations must be \(N devices, 2 features\), got shape \(3, 5\)"):
        PlainAdapter(2).features(np.zeros((3, 5)), "cpu")
