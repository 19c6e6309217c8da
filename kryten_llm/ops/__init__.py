"""The operator surface: health, metrics, the live dashboard, controls and NATS endpoints."""
