"""lpft."""
