"""The deployment kit: credentials, ACLs and broker configuration for a real fleet over mosquitto.

:func:`provision` writes them for every device of a scenario (``fleet deploy provision``); the
``deploy/`` folder at the top of the repository holds the systemd unit, the container file and
the walk-through from provisioning to a running board.
"""

from fleet.deploy.provision import provision

__all__ = ["provision"]
