"""SR-Bench library: multi-exit segmentors, Self-Regulation losses, data, metrics and runs."""

__version__ = "0.1.0"
