"""Link profiles: validation, loss-model theory, and sanity of the default profiles."""

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from fleet.net.profiles import DEFAULT_PROFILES, GilbertElliottLoss, IndependentLoss, LinkProfile, LossConfig

WIFI = {
    "latency_s": "10ms",
    "jitter_s": 0.005,
    "up_bps": 1e7,
    "down_bps": 2e7,
    "max_payload_bytes": 1024,
    "overhead_bytes": 100,
}
GE = {"model": "gilbert-elliott", "p_good_to_bad": 0.1, "p_bad_to_good": 0.5}


def stationary_distribution(transition):
    """Left eigenvector of a stochastic matrix for eigenvalue 1, normalized."""
    values, vectors = np.linalg.eig(transition.T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return v / v.sum()


@pytest.mark.parametrize("p_gb, p_bg, lg, lb", [(0.01, 0.25, 0.005, 0.5), (0.3, 0.6, 0.1, 0.9), (1.0, 1.0, 0.0, 1.0)])
def test_gilbert_elliott_stationary_values_match_the_markov_chain(p_gb, p_bg, lg, lb):
    config = GilbertElliottLoss(p_good_to_bad=p_gb, p_bad_to_good=p_bg, loss_good=lg, loss_bad=lb)
    good, bad = stationary_distribution(np.array([[1 - p_gb, p_gb], [p_bg, 1 - p_bg]]))
    assert config.stationary_bad == pytest.approx(bad)
    assert config.stationary_loss == pytest.approx(good * lg + bad * lb)
    # a bad spell lasts k packets with probability (1 - p_bg)^(k-1) p_bg
    k = np.arange(1, 20_000)
    assert config.mean_burst_length == pytest.approx(np.sum(k * (1 - p_bg) ** (k - 1) * p_bg))


def test_independent_loss_defaults_to_lossless():
    assert IndependentLoss().stationary_loss == 0.0
    assert IndependentLoss(p=0.3).stationary_loss == 0.3


def test_profile_reads_durations_and_a_tagged_loss_model():
    profile = LinkProfile.model_validate(WIFI | {"loss": GE})
    assert profile.latency_s == 0.01
    assert isinstance(profile.loss, GilbertElliottLoss) and profile.loss.loss_bad == 1.0
    assert LinkProfile.model_validate(WIFI).loss == IndependentLoss()
    assert LinkProfile.model_validate(WIFI).duty_cycle == 1.0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"up_bps": 0}, "up_bps"),
        ({"latency_s": -1}, "latency_s"),
        ({"max_payload_bytes": 0}, "max_payload_bytes"),
        ({"duty_cycle": 0}, "duty_cycle"),
        ({"bandwidth": 5}, "bandwidth"),
        ({"loss": {"model": "independent", "p": 1.0}}, "p"),
        ({"loss": GE | {"p_good_to_bad": 0}}, "p_good_to_bad"),
        ({"loss": GE | {"loss_bad": 1.5}}, "loss_bad"),
        ({"loss": {"model": "bursty"}}, "loss"),
    ],
)
def test_invalid_profiles_are_rejected_naming_the_field(change, field):
    with pytest.raises(ValidationError) as info:
        LinkProfile.model_validate(WIFI | change)
    assert any(field in map(str, e["loc"]) for e in info.value.errors())


def test_loss_config_is_a_discriminated_union():
    adapter = TypeAdapter(LossConfig)
    assert isinstance(adapter.validate_python({"model": "independent", "p": 0.1}), IndependentLoss)
    assert isinstance(adapter.validate_python(GE), GilbertElliottLoss)


# --- default profiles ---------------------------------------------------------------------


def test_default_profiles_cover_the_link_classes():
    assert set(DEFAULT_PROFILES) == {"ethernet", "wifi", "lte-m", "nb-iot", "lora"}


def test_default_profiles_are_ordered_from_wired_to_low_power_wide_area():
    names = ["ethernet", "wifi", "lte-m", "nb-iot", "lora"]
    latency = [DEFAULT_PROFILES[k].latency_s + DEFAULT_PROFILES[k].jitter_s for k in names]
    up = [DEFAULT_PROFILES[k].up_bps * DEFAULT_PROFILES[k].duty_cycle for k in names]
    assert latency[:4] == sorted(latency[:4])  # lora's delay is dominated by airtime instead
    assert up == sorted(up, reverse=True)
    assert all(DEFAULT_PROFILES[k].loss.stationary_loss < 0.05 for k in names)


def test_nb_iot_loss_is_bursty_and_lora_payloads_are_small():
    nb_iot = DEFAULT_PROFILES["nb-iot"].loss
    assert isinstance(nb_iot, GilbertElliottLoss) and nb_iot.mean_burst_length > 1
    # LoRaWAN EU868 application payloads are 51-222 bytes depending on the data rate
    assert 51 <= DEFAULT_PROFILES["lora"].max_payload_bytes <= 222
    assert DEFAULT_PROFILES["lora"].duty_cycle == 0.01


def test_lora_airtime_matches_the_semtech_time_on_air_formula():
    # SX1276 datasheet / AN1200.13: SF9, 125 kHz, CR 4/5, explicit header, CRC, 8-symbol preamble
    sf, bw, cr, payload = 9, 125e3, 1, 115 + 13  # application payload + LoRaWAN MAC bytes
    t_symbol = 2**sf / bw
    n_payload = 8 + max(np.ceil((8 * payload - 4 * sf + 28 + 16) / (4 * sf)) * (cr + 4), 0)
    time_on_air = (8 + 4.25 + n_payload) * t_symbol
    lora = DEFAULT_PROFILES["lora"]
    airtime = 8 * (lora.max_payload_bytes + lora.overhead_bytes) / lora.up_bps
    # the profile is affine in the size; the formula rounds up to whole 5-symbol blocks
    assert airtime == pytest.approx(time_on_air, abs=5 * t_symbol)
