"""Sphinx configuration of the API reference (built in CI with warnings as errors)."""

project = "xtwin"
author = "the xtwin developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "numpydoc"]
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_mock_imports = [
    "pybamm",
    "porespy",
    "astra",
    "finufft",
    "openpnm",
    "edt",
    "napari",
    "qtpy",
]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.citation"]
