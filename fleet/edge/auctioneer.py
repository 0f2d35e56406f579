"""The auctioneer of a site's feeder market on real boards (``fleet auctioneer``, issue 16).

It runs as a :class:`~fleet.edge.site.SiteRunner` role on the clock the site's agents share (their
``--epoch``): a round begins at every multiple of ``learner.params.market.period``, when each agent
publishes its bid on ``fleet/<site>/<device>/bid``; ``market.window`` later the auctioneer clears the
bids that arrived with the simulation's code (:func:`fleet.sim.market.auction`: the highest bids that
fit the feeder win, at the price of the first rejected one) and publishes one ``clearing`` message
``[winners (K,), kW (K,), price (K,)]`` on ``fleet/<site>/auctioneer/clearing``
(:func:`~fleet.sim.market.clearing_topic`), stamped with the clearing time and sent by endpoint N, as
the simulated auctioneer's.

Dropped and counted, as in the simulation: a bid that is not finite or out of ``[0, 1] x [0, kW of the
largest level]`` (``invalid``), of a round other than the one cleared (``late``: a bid that did not
arrive in its round is no bid), a device's second bid of a round (``repeated``); and before that, by the
checks every board makes (:mod:`fleet.edge.inbound`), a payload that does not decode or is not ``[bid,
kW]`` (``malformed``), a topic of no device of the site or a header naming another sender than the
topic's device (``foreign``), a QoS 1 message received twice (``duplicates``). A bid of the next round
that arrives before a clearing (its clock behind the agents') waits for that round (:class:`BidInbox`,
which a mixed run's bridge uses too, :mod:`fleet.sim.bridge`).
"""

from __future__ import annotations

import numpy as np

from fleet.edge.counters import Counters
from fleet.edge.inbound import InboundFilter
from fleet.edge.site import Publication, SiteView
from fleet.edge.view import Sender
from fleet.errors import ConfigError
from fleet.learners import REGISTRY
from fleet.mqtt.codec import Message
from fleet.mqtt.topics import site_filter
from fleet.mqtt.transport import Received
from fleet.sim.market import AUCTIONEER_NAME, DROPS, auction, bid_arrays, clearing_topic, trades


def bid_layout(message: Message) -> bool:
    """A bid is ``[valuation, kW] (2,)`` float32 (its range is the auction's to check)."""
    return len(message.arrays) == 1 and message.arrays[0].shape == (2,) and message.arrays[0].dtype == np.float32


class BidInbox:
    """The bids heard on the ``topics`` (topic -> the fleet index of its device), checked as a board checks
    what it receives (:class:`~fleet.edge.inbound.InboundFilter`, counting in ``counters``), until a round takes
    them."""

    def __init__(self, topics: dict[str, int], period: float, counters: Counters) -> None:
        """``period``: the market's, between two rounds."""
        senders = {topic: Sender("bid", i, i) for topic, i in topics.items()}
        self.inbound = InboundFilter(senders, {"bid": bid_layout}, counters)
        self.period = period
        self.bids: list[tuple[int, np.ndarray, float]] = []
        """(sender, [valuation, kW], published at) of the bids that arrived and no round took yet."""

    def offer(self, received: Received) -> None:
        accepted = self.inbound.check(received)
        if accepted is not None:
            self.bids.append((accepted.sender.index, accepted.message.arrays[0], accepted.message.timestamp))

    def take(self, round_t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The bids to clear with the round that began at ``round_t``, ``(sender (B,), bids (B, 2), published at
        (B,))`` (:func:`~fleet.sim.market.bid_arrays`): its own and those of other rounds (which the auction drops as
        late), except those of the next round: a clearing that runs late (its clock behind the shared one) may
        already hear them, and they are kept for it."""
        ahead = [round_t < b[2] <= round_t + self.period for b in self.bids]
        due = [b for b, later in zip(self.bids, ahead) if not later]
        self.bids = [b for b, later in zip(self.bids, ahead) if later]
        return bid_arrays(due)


class Auctioneer:
    """The feeder market of ``site``; see the module docstring."""

    name = AUCTIONEER_NAME

    def __init__(self, site: SiteView) -> None:
        s, w = site.scenario, site.world
        if not trades(s):
            raise ConfigError(
                f"learner.params.market.period: scenario {s.name!r} has no feeder market to run (learner "
                f"{s.learner.name}); an auctioneer needs learner auction-v1 with market.period set"
            )
        self.cfg = REGISTRY[s.learner.name].config_cls.model_validate(s.learner.params).market
        self.site, self.index = site, w.n
        self.period, self.offset = self.cfg.period, self.cfg.window
        self.topics = (site_filter(site.name, "bid"),)
        self.counters = Counters()
        self.inbox = BidInbox(site.device_topics("bid"), self.period, self.counters)
        self.max_kw = float(np.max(w.params.levels_kw))
        self.dropped = dict.fromkeys(DROPS, 0)
        self.rounds = self.seq = 0
        self.price = 0.0
        """The site's price (valuation per kWh) at the last clearing."""

    def offer(self, received: Received, t: float) -> None:
        self.inbox.offer(received)

    def step(self, t: float) -> Publication:
        """Clear the round that began a window before ``t``."""
        w, round_t = self.site.world, t - self.cfg.window
        cleared = auction(*self.inbox.take(round_t), round_t, w.site_of, w.feeder_kw, self.max_kw)
        for reason, count in cleared.dropped.items():
            self.dropped[reason] += count
        self.price = float(cleared.site_price[self.site.index])
        self.rounds += 1
        self.seq += 1
        payload = cleared.site_message(w.site_of, self.site.index, self.seq, t)
        return Publication(clearing_topic(self.site.name), payload, self.cfg.qos)

    def status(self) -> str:
        """The rounds, the last price and the bids dropped, by reason (``foreign``: of no device of the site,
        by topic or by header)."""
        c, d = self.counters, self.dropped
        return (
            f"rounds={self.rounds} price={self.price * self.cfg.price_per_kwh:.4f}/kWh invalid={d['invalid']} "
            f"foreign={d['foreign'] + c.unexpected} repeated={d['repeated']} late={d['late']} malformed={c.malformed}"
        )
