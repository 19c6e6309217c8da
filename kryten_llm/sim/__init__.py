"""A simulated CyTube channel and bridge, and the embedded NATS server: the demo machinery."""
