"""PPO's ratio against the policy that acted: the centralized learner's devices send the
log-probabilities of their actions with their experience, and the core takes its old
log-probabilities from the rollout when it has them."""

import numpy as np
import torch

from fleet.learners import make_learner
from fleet.learners.features import N_FEATURES, features
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout
from fleet.testing import _context, _observation
from tests.learners.test_batching import L, T, rollout

N = 4


def updated(r: Rollout, epochs: int) -> torch.Tensor:
    cfg = ActorCriticConfig(epochs=epochs)
    core = ActorCritic(cfg, 1, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu", shared=True)
    core.update(r, 0.95)
    return core.flat()


def own_logp(r: Rollout) -> torch.Tensor:
    """(T, N) log-probabilities of the rollout's actions under the policy ``updated`` starts from."""
    core = ActorCritic(ActorCriticConfig(), 1, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu", shared=True)
    log_pi = core.log_policy(r.obs[:-1].transpose(0, 1))  # (N, T, L)
    return log_pi.gather(-1, r.actions.T.unsqueeze(-1)).squeeze(-1).T.detach()


def test_the_ratio_is_taken_against_the_rollouts_log_probabilities():
    r = rollout(N, seed=0)
    for epochs in (1, 3):
        # the policy being updated acted: the same update as without them
        same = Rollout(r.obs, r.actions, r.rewards, logp=own_logp(r))
        torch.testing.assert_close(updated(same, epochs), updated(r, epochs), rtol=0, atol=1e-6)
        # another policy acted (probability 0.5 for each action taken, where this one has about 0.25): the
        # ratio of about 0.5 is outside the clip range, so positive advantages push and negative ones do not
        other = Rollout(r.obs, r.actions, r.rewards, logp=torch.full((T, N), float(np.log(0.5))))
        assert (updated(other, epochs) - updated(r, epochs)).abs().max() > 1e-4


def test_centralized_devices_send_the_log_probabilities_of_the_policy_that_acted():
    learner = make_learner("centralized-v1", {"n_steps": T, "experience_dtype": "float32"}, _context(N, 0))
    # the devices act with a policy the cloud no longer has (as after the cloud's next update)
    acting = learner.core.flat() * 1.5 + 0.05
    learner.core.load_flat(acting.clone())
    rng = np.random.default_rng(1)
    expected = []
    for tick in range(T + 1):
        obs = _observation(N, tick, rng)
        action = torch.as_tensor(learner.act(obs))
        log_pi = learner.core.log_policy(features(obs, "cpu").unsqueeze(1)).squeeze(1)  # (N, L)
        expected.append(log_pi.gather(-1, action.unsqueeze(-1)).squeeze(-1).detach())
        learner.observe(np.full(N, -0.1, np.float32))
    learner.update(T * 60.0)
    (pub,) = [pub for kind, pub in learner.outbox(np.ones(N, bool)) if kind == "experience"]
    assert len(pub.arrays) == 4  # observations, actions, rewards, log-probabilities
    sent = torch.as_tensor(pub.arrays[3])  # (N, T)
    torch.testing.assert_close(sent, torch.stack(expected[:T]).T, rtol=0, atol=1e-6)
    cloud = learner.cloud.log_policy(torch.as_tensor(pub.arrays[0][:, :-1]))  # (N, T, L) under the cloud's policy
    cloud_logp = cloud.gather(-1, torch.as_tensor(pub.arrays[1]).long().unsqueeze(-1)).squeeze(-1)
    assert (cloud_logp - sent).abs().max() > 1e-3  # what the old code took instead
