"""Calibration of the simulator from a running cluster's own Prometheus history (``kis calibrate``)."""
