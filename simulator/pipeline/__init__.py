"""Multi-stage inference pipelines: specs, a simulator, bottleneck detection and controllers."""
