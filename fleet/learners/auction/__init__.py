"""The auction learner: a cloned Vickrey society of bidding primitives on every device
(:mod:`~fleet.learners.auction.society`, generic over (N, F) tensors), its thermostat learner
``auction-v1`` (:mod:`~fleet.learners.auction.learner`) and their configs (:mod:`~fleet.learners.auction.config`)."""
