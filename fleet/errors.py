"""The project's exceptions: one root class and a few kinds.

The CLI prints the message of any :class:`FleetError` and exits with status 2, without a
traceback. Messages are written for the user: they name the field, the file or the byte at
fault and say what would be accepted instead.
"""


class FleetError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(FleetError):
    """A scenario, configuration value, input file or command-line option is invalid."""


class WireError(FleetError):
    """A message payload cannot be encoded or decoded (malformed, truncated, oversized...)."""


class TransportError(FleetError):
    """A message transport (simulated or real broker) refused or failed an operation."""


class RunDirError(FleetError):
    """A run directory cannot be created, read or written as asked."""
