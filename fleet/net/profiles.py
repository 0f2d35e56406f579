"""Link profiles: what a class of device link offers between a device and the MQTT broker.

A :class:`LinkProfile` gives one-way latency (a base plus an exponential jitter), throughput
up and down, the largest MQTT payload the link carries, the bytes each message costs on the
air besides its payload, and a packet-loss model: independent (Bernoulli) or bursty
(Gilbert-Elliott). Every figure is an *application-level effective* value for the path
device <-> broker, not a radio's peak rate.

:data:`DEFAULT_PROFILES` holds realistic defaults for ``ethernet``, ``wifi``, ``lte-m``,
``nb-iot`` and ``lora``, each figure with its source.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fleet.config import Duration, FiniteFloat, StrictModel

Probability = Annotated[float, Field(ge=0, le=1)]
PositiveProbability = Annotated[float, Field(gt=0, le=1)]
BitsPerSecond = Annotated[FiniteFloat, Field(gt=0)]


class IndependentLoss(StrictModel):
    """Each packet is lost with the same probability, independently of the others."""

    model: Literal["independent"] = "independent"
    p: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Probability that a packet is lost."""

    @property
    def stationary_loss(self) -> float:
        """Long-run fraction of packets lost: ``p``."""
        return self.p


class GilbertElliottLoss(StrictModel):
    """Bursty loss: a two-state (good/bad) Markov chain stepped once per packet.

    Before each packet the chain moves good -> bad with probability ``p_good_to_bad`` and
    bad -> good with probability ``p_bad_to_good``; the packet is then lost with the loss
    probability of the new state.
    """

    model: Literal["gilbert-elliott"] = "gilbert-elliott"
    p_good_to_bad: PositiveProbability
    """Per-packet probability of moving from the good to the bad state."""
    p_bad_to_good: PositiveProbability
    """Per-packet probability of moving from the bad to the good state."""
    loss_good: Probability = 0.0
    """Probability that a packet is lost in the good state."""
    loss_bad: Probability = 1.0
    """Probability that a packet is lost in the bad state."""

    @property
    def stationary_bad(self) -> float:
        """Long-run fraction of packets sent in the bad state: ``p_gb / (p_gb + p_bg)``."""
        return self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)

    @property
    def stationary_loss(self) -> float:
        """Long-run fraction of packets lost."""
        bad = self.stationary_bad
        return bad * self.loss_bad + (1 - bad) * self.loss_good

    @property
    def mean_burst_length(self) -> float:
        """Mean number of consecutive packets sent in the bad state: ``1 / p_bad_to_good``."""
        return 1 / self.p_bad_to_good


LossConfig = Annotated[IndependentLoss | GilbertElliottLoss, Field(discriminator="model")]
"""A loss model: ``{model: independent, p: ...}`` or ``{model: gilbert-elliott, ...}``."""


class LinkProfile(StrictModel):
    """Application-level characteristics of one class of link between a device and the broker."""

    latency_s: Duration
    """Base one-way latency device <-> broker (propagation, radio scheduling, core network,
    internet path), excluding serialization, which :attr:`up_bps`/:attr:`down_bps` account for."""
    jitter_s: Duration
    """Mean of an exponential delay added to each message on top of :attr:`latency_s`."""
    up_bps: BitsPerSecond
    """Effective uplink (device -> broker) throughput in bit/s: a message of ``b`` bytes on
    the air occupies the uplink for ``8 b / up_bps`` seconds."""
    down_bps: BitsPerSecond
    """Effective downlink (broker -> device) throughput in bit/s."""
    max_payload_bytes: Annotated[int, Field(gt=0)]
    """Largest MQTT payload the link and the device's stack carry; larger ones are rejected."""
    overhead_bytes: Annotated[int, Field(ge=0)]
    """Bytes each message costs on the air besides its payload: the MQTT PUBLISH header and
    topic, TLS record, TCP/IP headers and link framing (or, for LoRaWAN, the MAC header and
    the preamble's airtime in byte equivalents). Acknowledgements and handshakes are not
    counted."""
    duty_cycle: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Largest fraction of time the device may transmit (a regulatory limit in unlicensed
    bands): after a message of airtime ``a`` the link stays silent for ``a (1/duty_cycle - 1)``."""
    loss: LossConfig = IndependentLoss()
    """Per-message loss model, applied separately in each direction."""


# --- default profiles ----------------------------------------------------------------------
#
# Shared assumptions: the broker runs in a regional cloud; a message is one MQTT PUBLISH
# over TLS 1.3 over TCP over IPv4. Per message that costs, besides the payload:
#   MQTT PUBLISH: fixed header 2 B (payload < 128 B; up to 5 B), topic length 2 B plus a
#     ~32 B topic such as "fleet/site-01/dev/012345/params", packet id 2 B (QoS 1)  = 38 B
#   TLS 1.3 record: header 5 B + content type 1 B + AEAD tag 16 B (RFC 8446 §5.2)     = 22 B
#   TCP (no options) 20 B + IPv4 20 B (RFC 793, RFC 791)                              = 40 B
# i.e. 100 B, plus the link's framing. TCP ACKs and the TLS handshake are not counted.
_MQTT_TLS_TCP_IP_BYTES = 38 + 22 + 40

DEFAULT_PROFILES: dict[str, LinkProfile] = {
    # Wired Fast Ethernet (IEEE 802.3u, 100 Mbit/s). TCP goodput 100 Mbit/s x 1448/1538 =
    # 94 Mbit/s (1448 B of payload per 1538 B on the wire with timestamps). One-way latency:
    # a wired broadband connection to a regional cloud has an RTT of about 10 ms, so 5 ms
    # one way, with sub-millisecond jitter. Framing: preamble+SFD 8, header 14, FCS 4,
    # inter-frame gap 12 = 38 B. Payload: a broker-side message_size_limit of 256 KiB.
    # Loss: the 802.3 bit-error-rate objective is 1e-12, so effectively lossless.
    "ethernet": LinkProfile(
        latency_s=0.005,
        jitter_s=0.0005,
        up_bps=94e6,
        down_bps=94e6,
        max_payload_bytes=256 * 1024,
        overhead_bytes=_MQTT_TLS_TCP_IP_BYTES + 38,
        loss=IndependentLoss(p=0.0),
    ),
    # Home Wi-Fi, single-stream 802.11n at 2.4 GHz, 20 MHz (the usual IoT module): PHY peak
    # 72.2 Mbit/s (MCS7, short GI); TCP goodput of such modules is typically 10-20 Mbit/s,
    # and home broadband upload is often the tighter limit, hence 10 up / 20 down. Latency:
    # Wi-Fi hop (a few ms) plus broadband to a regional cloud, RTT about 20 ms -> 10 ms one
    # way, with 5 ms mean jitter from channel contention. Framing: 802.11 QoS-data header 26,
    # LLC/SNAP 8, FCS 4 = 38 B (PHY preamble and MAC ACK time are in the effective rate).
    # Loss: 0.1 % residual after 802.11 MAC retransmissions (interference, roaming).
    "wifi": LinkProfile(
        latency_s=0.010,
        jitter_s=0.005,
        up_bps=10e6,
        down_bps=20e6,
        max_payload_bytes=256 * 1024,
        overhead_bytes=_MQTT_TLS_TCP_IP_BYTES + 38,
        loss=IndependentLoss(p=0.001),
    ),
    # LTE-M, UE category M1 (3GPP TS 36.306: at most 1000 bits per 1 ms TTI each way,
    # 1 Mbit/s peak full duplex; the half-duplex FDD modules most devices use peak at about
    # 300 kbit/s down and 375 kbit/s up, GSMA "LTE-M Deployment Guide"). Effective
    # application rates taken as 2/3 of the half-duplex peaks: 250 up / 200 down kbit/s.
    # Latency: 10-15 ms over the radio in connected mode (3GPP TR 36.888; Ericsson
    # "Cellular networks for Massive IoT", 2016) plus core network and internet to the
    # broker: 75 ms one way, 25 ms mean jitter (scheduling, HARQ retransmissions).
    # Framing: PDCP 2 + RLC 2 + MAC 2 = 6 B. Payload: one message fits one PDCP SDU
    # (8188 B, TS 36.323) minus the 100 B of headers. Loss: 0.5 % residual after
    # HARQ/RLC (radio link failures, cell changes).
    "lte-m": LinkProfile(
        latency_s=0.075,
        jitter_s=0.025,
        up_bps=250e3,
        down_bps=200e3,
        max_payload_bytes=8188 - _MQTT_TLS_TCP_IP_BYTES,
        overhead_bytes=_MQTT_TLS_TCP_IP_BYTES + 6,
        loss=IndependentLoss(p=0.005),
    ),
    # NB-IoT, UE category NB1 (3GPP TS 36.306: transport blocks up to 680 bits down
    # and 1000 bits up; peak about 26 kbit/s down, 62.5 kbit/s up multi-tone; single-tone
    # and coverage-enhancement repetitions lower it). Effective application rate taken as
    # 20 kbit/s each way. Latency: 3GPP TR 45.820 targets 10 s for an exception report at
    # the coverage edge (164 dB MCL); Ericsson (2016) gives 1.6-10 s: 1 s base one way plus
    # 0.6 s mean jitter for good coverage. Framing as LTE (6 B). Payload: one message per
    # PDCP SDU, at most 1600 B for NB-IoT (TS 36.323), minus the 100 B of headers.
    # Loss: bursty, as coverage fades and cell reselection drop runs of packets. Assumed
    # Gilbert-Elliott chain: bad bursts of 4 packets on average (p_bad_to_good = 0.25),
    # entered every ~100 packets (p_good_to_bad = 0.01), 50 % loss when bad and 0.5 % when
    # good: stationary loss 2.4 %, of which most comes in bursts.
    "nb-iot": LinkProfile(
        latency_s=1.0,
        jitter_s=0.6,
        up_bps=20e3,
        down_bps=20e3,
        max_payload_bytes=1600 - _MQTT_TLS_TCP_IP_BYTES,
        overhead_bytes=_MQTT_TLS_TCP_IP_BYTES + 6,
        loss=GilbertElliottLoss(p_good_to_bad=0.01, p_bad_to_good=0.25, loss_good=0.005, loss_bad=0.5),
    ),
    # LoRaWAN class A, EU868, data rate DR3 = SF9/125 kHz (LoRaWAN Regional Parameters
    # RP002-1.0.x, EU863-870: DR0-DR5 = SF12-SF7 at 250-5470 bit/s; max application
    # payload N = 51 B at DR0-2, 115 B at DR3, 222 B at DR4-5). Bit rate at SF9, coding
    # rate 4/5: 9 x 125000 / 2^9 x 4/5 = 1758 bit/s. Overhead: LoRaWAN MAC header, FPort
    # and MIC (13 B) plus preamble (12.25 symbols), PHY header and CRC (~9.1 symbols) at
    # 4.1 ms per symbol = 87.5 ms, i.e. 19 B at 1758 bit/s: 32 B. Duty cycle: 1 % in
    # sub-band g1 (ETSI EN 300 220-2), applied to the downlink too (the gateway transmits
    # in the same sub-band for RX1). The device's uplink reaches an MQTT integration of
    # the network server: 200 ms one way (gateway backhaul, network-server deduplication)
    # with 100 ms mean jitter. Class A downlink waits for the device's next uplink, which
    # this profile does not model. Loss: 3 % (ALOHA collisions, fading) for unconfirmed
    # uplinks in a moderately loaded cell.
    "lora": LinkProfile(
        latency_s=0.2,
        jitter_s=0.1,
        up_bps=1758.0,
        down_bps=1758.0,
        max_payload_bytes=115,
        overhead_bytes=13 + 19,
        duty_cycle=0.01,
        loss=IndependentLoss(p=0.03),
    ),
}
