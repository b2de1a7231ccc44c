"""The pure core: sketches, statistics, detectors, quality checks and monitors.

Nothing in this package touches Kafka, Redis, the clock, the environment or
logging configuration. It works on numpy columns and plain data, so the
runtime and the replay run the exact same code.
"""
