"""Every registered learner passes the shipped contract test."""

import pytest

from fleet.learners import REGISTRY
from fleet.testing import check_learner_contract


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_learner_honours_the_contract(name):
    check_learner_contract(name)


def test_the_contract_catches_a_learner_that_acts_out_of_range(monkeypatch):
    from fleet.learners.rule_based import RuleBasedLearner

    monkeypatch.setattr(RuleBasedLearner, "act", lambda self, obs: obs.temp_c.astype(int) * 0 + 7)
    with pytest.raises(AssertionError, match="outside"):
        check_learner_contract("rule-based-v1")
