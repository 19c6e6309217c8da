"""The reply pipeline: filters, triggers, limits, prompts, validation and formatting."""
