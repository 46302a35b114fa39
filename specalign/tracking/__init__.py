"""Experiment tracking (the `logger` config group): W&B or nothing, one run per step."""
