"""The SimPy engine: control loop, message workloads, churn and metrics for a simulated fleet."""
