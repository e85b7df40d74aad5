"""Report folders appear whole or not at all, and only over a folder lpft made: see :mod:`lpft.outputs`."""

from ..outputs import output_folder as report_folder

__all__ = ["report_folder"]
