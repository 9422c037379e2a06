"""Acquisition planning: the noise model, the systematic error budget and the planner.

Pure physics and the pipeline's own operators; nothing here imports the twin
(:mod:`xtwin.forward`), so a plan is the same whether or not the twin is installed.
"""
