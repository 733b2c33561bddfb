"""KIScaler: the runtime half of KIS-S.

Everything here is importable without torch: the observation schema, the
policies, the guardrails and the Kubernetes/Prometheus edges. The simulator
imports this package; this package never imports the simulator.
"""

__version__ = "0.1.0"
