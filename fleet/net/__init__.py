"""The simulated network between devices and the MQTT broker.

- :mod:`~fleet.net.profiles`: link profiles (latency, jitter, throughput, payload limit,
  per-message overhead, loss model) and realistic defaults per link class;
- :mod:`~fleet.net.queues`: FIFO single-server queues computed in bulk;
- :mod:`~fleet.net.loss`: per-endpoint Gilbert-Elliott (or independent) packet loss;
- :mod:`~fleet.net.link`: one link direction for N endpoints (serialization, queueing,
  latency, jitter, loss);
- :mod:`~fleet.net.churn`: devices going offline and coming back, scheduled link cuts.

Every function works on whole batches: (N,) arrays over endpoints, (M,) over messages.

Import the modules themselves (``from fleet.net.profiles import LinkProfile``): the package imports
none of them, so that reading a scenario (which needs the profiles) loads no torch.
"""
