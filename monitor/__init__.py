"""parcel-monitor: per-parcel monitoring of agricultural parcels with Sentinel-1 and Sentinel-2.

The package stays light to import: the compiled kernels (`monitor._core`) and the heavy
geospatial libraries are imported by the modules that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parcel-monitor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
