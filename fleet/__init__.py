"""fleet: simulate, train and deploy fleets of learning thermostats over MQTT."""

__version__ = "0.1.0"
