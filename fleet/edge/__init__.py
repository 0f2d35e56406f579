"""The edge agent that runs one thermostat of a scenario on a real board (``fleet agent``).

- :mod:`fleet.edge.agent`: :class:`~fleet.edge.agent.EdgeAgent`, the simulator's learner with
  N = 1 on SimPy's real-time clock, talking through a :class:`~fleet.mqtt.transport.Transport`;
- :mod:`fleet.edge.view`: one device's view of a scenario (its parameters, neighbours, topics),
  drawn exactly as the simulator draws the fleet;
- :mod:`fleet.edge.inbound`: the checks every received message passes before the learner sees it;
- :mod:`fleet.edge.uplink`: outbox first, then the broker, with size checks and acknowledgements;
- :mod:`fleet.edge.state`: the state folder (checkpoint, outbox);
- :mod:`fleet.edge.counters`: what the agent counts;
- :mod:`fleet.edge.launch`: from ``fleet agent``'s options (and agent.env) to an agent;
- :mod:`fleet.edge.outbox`: :class:`~fleet.edge.outbox.Outbox`, a bounded SQLite queue of the
  messages the agent could not send yet, and of the sequence number of the last one queued per
  kind (saved with it in one transaction), kept across restarts;
- :mod:`fleet.edge.watchdog`: systemd readiness, status and watchdog notifications.
- :mod:`fleet.edge.site`: the runner of a site role, a process of a site that is not a device;
  the roles: :mod:`fleet.edge.auctioneer` (``fleet auctioneer``, the feeder market) and
  :mod:`fleet.edge.meter` (``fleet meter``, the feeder's meter readings).

The hardware side (sensor and relay) is :mod:`devices.drivers`.
"""
