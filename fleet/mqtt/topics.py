"""MQTT topic names, topic filters and the fleet's topic namespace.

Every device publishes under ``fleet/<site>/<device>/<kind>`` with ``kind`` one of
:data:`KINDS`. Topic names and filters follow MQTT 3.1.1 / 5.0 section 4.7: levels are
separated by ``/``, ``+`` matches exactly one level (possibly empty), ``#`` matches any
number of trailing levels including the parent (``a/#`` matches ``a``), and a filter that
starts with a wildcard does not match a topic that starts with ``$``.
"""

from __future__ import annotations

from fleet.errors import ConfigError, WireError

KINDS: tuple[str, ...] = ("telemetry", "status", "consensus", "params", "experience", "cmd", "meter", "bid", "clearing")
"""The last level of a device topic; ``KINDS[i]`` is wire kind ``codec.Kind(i + 1)``."""

MAX_TOPIC_BYTES = 65535
"""Longest topic name or filter, in UTF-8 bytes (MQTT 5, section 1.5.4)."""


def _utf8_length(text: str, what: str, error: type[Exception]) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise error(f"{what} {text!r} is not valid UTF-8 ({exc.reason} at character {exc.start})") from None


def _check_text(text: str, what: str, error: type[Exception]) -> None:
    """Checks shared by names and filters: non-empty, no NUL, at most 65535 UTF-8 bytes."""
    if not isinstance(text, str) or not text:
        raise error(f"{what} must be a non-empty string, got {text!r}")
    if "\0" in text:
        raise error(f"{what} {text!r} contains the NUL character (U+0000), which MQTT forbids")
    size = _utf8_length(text, what, error)
    if size > MAX_TOPIC_BYTES:
        raise error(f"{what} is {size} UTF-8 bytes long; MQTT allows at most {MAX_TOPIC_BYTES}")


def validate_level(value: str, what: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` can be one literal level of a device topic.

    ``what`` names the value in the message, e.g. ``"site"`` or ``"device name"``.
    """
    _check_text(value, what, ConfigError)
    bad = sorted(set(value) & {"/", "+", "#"})
    if bad:
        raise ConfigError(f"{what} {value!r} contains {', '.join(map(repr, bad))}; use letters, digits, '-' or '_'")


def device_topic(site: str, device: str, kind: str) -> str:
    """The topic ``fleet/<site>/<device>/<kind>`` a device publishes ``kind`` messages on."""
    validate_level(site, "site")
    validate_level(device, "device name")
    _check_kind(kind)
    return f"fleet/{site}/{device}/{kind}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"message kind {kind!r} is not one of {', '.join(KINDS)}")


def site_filter(site: str, kind: str) -> str:
    """The topic filter ``fleet/<site>/+/<kind>``: the ``kind`` messages of every publisher of a site."""
    validate_level(site, "site")
    _check_kind(kind)
    return f"fleet/{site}/+/{kind}"


def validate_topic_name(topic: str) -> None:
    """Raise :class:`WireError` unless ``topic`` is a valid MQTT topic name (no wildcards)."""
    _check_text(topic, "topic name", WireError)
    for char in "+#":
        if char in topic:
            raise WireError(f"topic name {topic!r} contains the wildcard {char!r} at character {topic.index(char)}")


def validate_topic_filter(filter: str) -> None:
    """Raise :class:`ConfigError` unless ``filter`` is a valid MQTT topic filter."""
    _check_text(filter, "topic filter", ConfigError)
    levels = filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(
                f"topic filter {filter!r}: '#' must be a whole level and the last one (level {i} is {level!r})"
            )
        if "+" in level and level != "+":
            raise ConfigError(
                f"topic filter {filter!r}: '+' must be a whole level (level {i} is {level!r}); write e.g. 'a/+/b'"
            )


def topic_matches(filter: str, topic: str) -> bool:
    """Whether the topic name ``topic`` matches the topic filter ``filter`` (MQTT 5, 4.7).

    Neither argument is validated: check them with :func:`validate_topic_filter` and
    :func:`validate_topic_name` where they enter.
    """
    if topic.startswith("$") and filter[:1] in ("+", "#"):
        return False
    filter_levels, topic_levels = filter.split("/"), topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i == len(topic_levels) or level not in ("+", topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)
