"""Subcommands of the ``lpft`` CLI, one module each."""
