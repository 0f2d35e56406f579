"""MQTT for the fleet: topics, routing, the wire codec, QoS 1 de-duplication, retained messages,
and the transports that carry messages to a broker.

- :mod:`fleet.mqtt.topics`: the ``fleet/<site>/<device>/<kind>`` namespace, topic name and
  filter validation, and MQTT filter matching;
- :mod:`fleet.mqtt.routing`: :class:`~fleet.mqtt.routing.TopicIndex`, which routes a round
  of messages to subscribers in bulk;
- :mod:`fleet.mqtt.codec`: the versioned binary envelope of every message, one at a time or
  as ``(M, L)`` batches;
- :mod:`fleet.mqtt.dedup`: :class:`~fleet.mqtt.dedup.SeqDeduplicator` for QoS 1 receivers;
- :mod:`fleet.mqtt.retained`: :class:`~fleet.mqtt.retained.RetainedStore`;
- :mod:`fleet.mqtt.transport`: the :class:`~fleet.mqtt.transport.Transport` protocol of one
  client connection, implemented by :mod:`fleet.mqtt.memory` (an in-process broker and its
  clients) and :mod:`fleet.mqtt.paho_transport` (paho-mqtt to a real broker, whose address
  :mod:`fleet.mqtt.url` parses).
"""
