"""Every docstring example in the package runs (neural-tangents style): a stale example is a failing test."""

import doctest
import importlib
import pkgutil

import pytest

import lpft

MODULES = sorted(m.name for m in pkgutil.walk_packages(lpft.__path__, "lpft.") if m.name != "lpft.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
