"""The I/O runtime around the pure core: Kafka in, Redis state, alerts out."""
