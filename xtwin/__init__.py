"""xtwin: a digital twin and shared pipeline for operando XANES-TXM nano-CT of NMC532 cathodes.

The package is split by stage (see ``docs/architecture.md``)::

    forward -> (scan file) -> io -> prep -> recon -> retrieve -> analysis -> validate

Heavy dependencies (pybamm, porespy, astra, dask) are imported inside the functions that use
them, so ``import xtwin`` stays fast.
"""

from xtwin.errors import XtwinError, XtwinInputError

__version__ = "0.1.0"

__all__ = ["XtwinError", "XtwinInputError", "__version__"]
