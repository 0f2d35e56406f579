"""Building blocks of the edge agent that runs one thermostat on a real board.

- :mod:`fleet.edge.outbox`: :class:`~fleet.edge.outbox.Outbox`, a bounded SQLite queue of the
  messages the agent could not send while the broker was away, kept across restarts;
- :mod:`fleet.edge.watchdog`: systemd readiness, status and watchdog notifications.

The hardware side (sensor and relay) is :mod:`devices.drivers`.
"""
