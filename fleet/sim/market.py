"""The feeder market: every round the devices of a site bid for power, and its auctioneer sells the feeder.

A round starts every ``market.period`` (:class:`~fleet.learners.auction.config.MarketConfig`), at t:

- at t, every reachable device publishes a ``bid`` message ``[valuation in [0, 1], kW wanted]``: its
  winning primitive's bid and the power of its level (the learner's ``market_bids``); a bid of v offers
  ``v * price_per_kwh`` for each kWh;
- at t + ``window`` the auctioneer drains the bids that arrived, drops and counts those that are not
  finite or out of range, from a sender that is not a device of a site, repeated, or of another round
  (late: a bid that did not arrive in its round is no bid); then sells each site's feeder capacity
  (:func:`clear_site`) and publishes one ``clearing`` message ``[winners (K,), kW granted (K,), price
  (K,)]``;
- at each control tick a device takes the clearings that reached it (the learner's ``market_inbox``):
  a winner may draw up to the kW it won, a device that bid and did not win runs at what it was granted,
  none (its lowest level), and both pay the round's price on what they draw until the next clearing is
  due (period + window after their round). A device whose bid or clearing was lost, or that hears no
  clearing at all (the auctioneer unreachable), controls on its own, as without a market.

The auctioneer here is a role of the cloud collector endpoint N of :mod:`fleet.net.network`, which
holds one auction per site: a per-site endpoint would need a site node in the network model (its link,
its topics, its churn), beyond this change. Its messages cross the collector's link and every device
hears the one clearing of all sites, so the bytes counted are an upper bound of a per-site auctioneer's.
On real boards each site has its own auctioneer (``fleet auctioneer``, :mod:`fleet.edge.auctioneer`): it
clears with :func:`auction` too and publishes its site's part of the outcome (:meth:`Cleared.site_message`) on
:func:`clearing_topic`, with the same sender (N). In a mixed fleet (:mod:`fleet.sim.bridge`) the boards' bids,
checked by the same :func:`screen`, join the simulated devices' in :meth:`SimMarket.clear`, and the bridge
publishes that part for each site with a board.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fleet.learners import REGISTRY
from fleet.learners.base import Deliveries
from fleet.mqtt.codec import DType, Kind, encode, encode_batch
from fleet.mqtt.topics import KINDS, device_topic
from fleet.net.network import Outgoing, SimNetwork
from fleet.scenario import Scenario
from fleet.sim.world import World
from fleet.statefile import attrs_state, expect_keys, load_attrs

BID, CLEARING = KINDS.index("bid"), KINDS.index("clearing")
DROPS = ("invalid", "foreign", "repeated", "late")
"""Why the auctioneer drops a bid: not finite or out of range, not from a device of a site, a sender's
second bid of a round, published for an earlier round."""
AUCTIONEER_NAME = "auctioneer"
"""The device-name level of a site auctioneer's topics on real boards."""


def trades(scenario: Scenario) -> bool:
    """Whether the scenario's learner trades in a feeder market (``learner.params.market.period`` set)."""
    cfg = REGISTRY[scenario.learner.name].config_cls.model_validate(scenario.learner.params)
    market = getattr(cfg, "market", None)
    return market is not None and market.period is not None


def clearing_topic(site: str) -> str:
    """Where the auctioneer of ``site`` publishes its clearings on real boards."""
    return device_topic(site, AUCTIONEER_NAME, "clearing")


def clear_site(valuation: np.ndarray, kw: np.ndarray, capacity_kw: float) -> tuple[np.ndarray, float]:
    """A uniform-price multi-unit auction of ``capacity_kw``: bids (B,) of ``valuation`` per kWh for ``kw``
    each, all or nothing. The highest bids win while their kW fit (ties: the earlier bid); the first bid that
    does not fit is rejected with all below it, and sets the price every winner pays (the multi-unit Vickrey
    price); 0 if every bid fits. Returns (won (B,) bool, price)."""
    order = np.argsort(-valuation, kind="stable")
    fits = np.cumsum(kw[order]) <= capacity_kw
    first_out = len(order) if fits.all() else int(np.argmin(fits))
    won = np.zeros(len(valuation), bool)
    won[order[:first_out]] = True
    return won, float(valuation[order[first_out]]) if first_out < len(order) else 0.0


@dataclass(frozen=True)
class Cleared:
    """The outcome of one round at every site."""

    winner: np.ndarray
    """(K,) int64 the devices that won."""
    kw: np.ndarray
    """(K,) the kW each won."""
    price: np.ndarray
    """(K,) the valuation per kWh each pays: its site's price."""
    site_price: np.ndarray
    """(S,) every site's price (valuation per kWh)."""
    dropped: dict[str, int]
    """Bids dropped, per reason of :data:`DROPS`."""

    def arrays(self) -> list[np.ndarray]:
        """The ``clearing`` message's arrays: winners, kW and price, each (K,) float32."""
        return [a.astype(np.float32) for a in (self.winner, self.kw, self.price)]

    def site_message(self, site_of: np.ndarray, site: int, seq: int, t: float) -> bytes:
        """The clearing of ``site`` alone as its auctioneer on real boards publishes it at ``t`` on
        :func:`clearing_topic`: that site's winners (``site_of`` (N,) is each device's site), sent by endpoint N."""
        mine = site_of[self.winner] == site
        return encode(Kind.CLEARING, len(site_of), seq, t, [a[mine] for a in self.arrays()], DType.FLOAT32)


def screen(
    sender: np.ndarray, bids: np.ndarray, published_at: np.ndarray, round_t: float, n: int, max_kw: float
) -> np.ndarray:
    """Why each of B bids is no bid of the round that began at ``round_t``: ``sender`` (B,), ``bids`` (B, 2)
    ``[valuation, kW]`` and their ``published_at`` (B,), in arrival order, from devices 0..``n``-1. Returns (B,)
    int64: the index in :data:`DROPS` of the first reason that holds, or -1 for a bid that counts. Bids must lie
    in [0, 1] x [0, ``max_kw``], the largest level's kW as the wire carries it (float32, which may round it up)."""
    reason = np.full(len(sender), -1, np.int64)

    def drop(mask: np.ndarray, why: str) -> None:
        reason[(reason < 0) & mask] = DROPS.index(why)

    ok = np.isfinite(bids).all(1) & (bids >= 0).all(1) & (bids[:, 0] <= 1) & (bids[:, 1] <= np.float32(max_kw))
    drop(~ok, "invalid")
    drop((sender < 0) | (sender >= n), "foreign")
    drop(published_at != round_t, "late")
    first = np.zeros(len(sender), bool)
    first[np.unique(np.where(reason < 0, sender, -1), return_index=True)[1]] = True
    drop(~first, "repeated")
    return reason


def tally(reason: np.ndarray) -> dict[str, int]:
    """The bids dropped per reason of :data:`DROPS`, from :func:`screen`'s ``reason`` (B,)."""
    return {why: int((reason == k).sum()) for k, why in enumerate(DROPS)}


def bid_arrays(rows: list[tuple[int, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bids received one by one, ``(sender, [valuation, kW], published at)``, as :func:`auction` takes them:
    ``sender`` (B,) int64, ``bids`` (B, 2) and ``published_at`` (B,)."""
    sender = np.array([r[0] for r in rows], np.int64)
    bids = np.array([r[1] for r in rows], float).reshape(-1, 2)
    return sender, bids, np.array([r[2] for r in rows], float)


NO_BIDS = bid_arrays([])
"""No bid: (sender (0,), bids (0, 2), published at (0,))."""


def auction(
    sender: np.ndarray,
    bids: np.ndarray,
    published_at: np.ndarray,
    round_t: float,
    site_of: np.ndarray,
    capacity_kw: np.ndarray,
    max_kw: float,
) -> Cleared:
    """Clear the round that began at ``round_t`` from the B bids that arrived: ``sender`` (B,), ``bids``
    (B, 2) ``[valuation, kW]`` and their ``published_at`` (B,), in arrival order. ``site_of`` (N,) is each
    device's site, ``capacity_kw`` (S,) each site's feeder; the bids that are none of the round are dropped
    (:func:`screen`)."""
    reason = screen(sender, bids, published_at, round_t, len(site_of), max_kw)
    keep = np.flatnonzero(reason < 0)
    keep = keep[np.argsort(sender[keep], kind="stable")]
    winners, kws, prices, site_price = [], [], [], np.zeros(len(capacity_kw))
    for s, capacity in enumerate(capacity_kw):
        rows = keep[site_of[sender[keep]] == s]
        won, site_price[s] = clear_site(bids[rows, 0], bids[rows, 1], float(capacity))
        winners.append(sender[rows[won]])
        kws.append(bids[rows[won], 1])
        prices.append(np.full(int(won.sum()), site_price[s]))
    return Cleared(np.concatenate(winners), np.concatenate(kws), np.concatenate(prices), site_price, tally(reason))


class SimMarket:
    """The market of a simulated fleet: the devices' bids and the auctioneer at the collector endpoint."""

    def __init__(
        self,
        network: SimNetwork,
        learner,
        world: World,
        collector: int,
        clearing_topic: str,
        arrived: Callable[[int, float], Iterator[Deliveries]],
    ) -> None:
        """``learner``: an auction learner with a market; ``arrived(kind, t)``: the messages of ``kind`` that
        reached their receivers by ``t`` and pass the codec's checks (the engine counts the others)."""
        self.network, self.learner, self.world = network, learner, world
        self.collector, self.arrived = collector, arrived
        self.cfg = learner.cfg.market
        self.max_kw = float(np.max(learner.levels_kw))
        network.subscribe(collector, ["fleet/+/+/bid"])
        for i in range(world.n):
            network.subscribe(i, [clearing_topic])
        self.bid_seq = np.zeros(world.n, np.int64)
        self.clearing_seq = 0
        self.rounds = 0
        self.dropped = dict.fromkeys(DROPS, 0)
        self.site_price = np.zeros(len(world.site_names))

    def bid(self, t: float, active: np.ndarray) -> None:
        """Round start: the ``active`` (N,) devices publish their bids."""
        sender, bids = self.learner.market_bids(t, active)
        if len(sender):
            self.bid_seq[sender] += 1
            rows = encode_batch(Kind.BID, sender, self.bid_seq[sender], t, [bids], DType.FLOAT32)
            self.network.publish(t, Outgoing(BID, sender, self.bid_seq[sender], rows, self.cfg.qos))

    def clear(self, t: float, more: tuple[np.ndarray, np.ndarray, np.ndarray] = NO_BIDS) -> Cleared:
        """``window`` after the round began: the auctioneer clears what arrived and publishes the outcome, which
        it returns. ``more``: bids that join the round beside those that arrived here, ``(sender (B,), bids (B, 2),
        published at (B,))`` (a mixed fleet's boards', :meth:`fleet.sim.bridge.Bridge.bids`)."""
        got = list(self.arrived(BID, t))
        sender = np.concatenate([*(g.sender for g in got), more[0]])
        bids = np.concatenate([*(g.arrays_of()[0].reshape(-1, 2) for g in got), more[1]])
        stamp = np.concatenate([*(g.published_at for g in got), more[2]])
        w = self.world
        cleared = auction(sender, bids, stamp, t - self.cfg.window, w.site_of, w.feeder_kw, self.max_kw)
        for reason, count in cleared.dropped.items():
            self.dropped[reason] += count
        self.site_price = cleared.site_price
        self.rounds += 1
        self.clearing_seq += 1
        arrays = [a[None] for a in cleared.arrays()]
        sender, seq = np.array([self.collector]), np.array([self.clearing_seq])
        rows = encode_batch(Kind.CLEARING, sender, seq, t, arrays, DType.FLOAT32)
        self.network.publish(t, Outgoing(CLEARING, sender, seq, rows, self.cfg.qos))
        return cleared

    def deliver(self, t: float) -> None:
        """Before a control tick: hand the devices the clearings that reached them by ``t``."""
        self.learner.market_inbox(t, list(self.arrived(CLEARING, t)))

    def metrics(self) -> dict[str, float]:
        """``market/rounds``, the bids dropped by reason, and each site's last price per kWh."""
        row = {"market/rounds": float(self.rounds)}
        row.update({f"market/dropped_{k}": float(v) for k, v in self.dropped.items()})
        for name, price in zip(self.world.site_names, self.site_price):
            row[f"market/price_{name}"] = float(price) * self.cfg.price_per_kwh
        return row

    STATE = ("bid_seq", "clearing_seq", "rounds", "dropped", "site_price")

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, self.STATE)
        load_attrs(self, state, self.STATE)
