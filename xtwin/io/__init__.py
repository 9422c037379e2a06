"""File contracts: scan files (Data Exchange), truth files, Li-map files; real-data readers."""

from xtwin.io._h5 import attr_value, open_h5, write_h5
from xtwin.io.limap import LiMap, read_limap, write_limap
from xtwin.io.scan import ScanData, ScanHeader, write_scan
from xtwin.io.source import ScanSource, open_scan, read_scan, read_scans
from xtwin.io.truth import TruthData, read_truth, write_truth

__all__ = [
    "attr_value",
    "open_h5",
    "write_h5",
    "LiMap",
    "ScanData",
    "ScanHeader",
    "ScanSource",
    "TruthData",
    "open_scan",
    "read_limap",
    "read_scan",
    "read_scans",
    "read_truth",
    "write_limap",
    "write_scan",
    "write_truth",
]
