"""Readers of the raw device files: one module per device, returning standard objects."""
