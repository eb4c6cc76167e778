"""Training runs: the trainer, its callbacks, strategies and precision."""
