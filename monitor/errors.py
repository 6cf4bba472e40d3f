"""The one error hierarchy of parcel-monitor.

Every error the engine raises on purpose is a `MonitorError`; each is also the standard
exception it resembles, so callers that catch `ValueError` or `OSError` keep working.
Messages are one line and name the offending input.
"""


class MonitorError(Exception):
    """Base of every error raised by parcel-monitor on purpose."""


class ConfigError(MonitorError, ValueError):
    """A setting or command-line argument is wrong."""


class InvalidAcquisition(MonitorError, ValueError):
    """An acquisition message is not a usable STAC Item (malformed, missing fields, bad dates)."""


class AssetError(MonitorError, OSError):
    """A raster asset is missing, unreadable, corrupt, outside the allowed roots, or off-grid."""


class CrsMismatch(MonitorError, ValueError):
    """Rasters, parcels or declared projection metadata disagree on CRS or grid."""


class ParcelError(MonitorError, ValueError):
    """A parcel file or parcel geometry cannot be used (empty, invalid, duplicate ids)."""


class KernelError(MonitorError, ValueError):
    """A Rust kernel refused its input (shapes, dtypes, sizes)."""


class StoreError(MonitorError, OSError):
    """The parcel observation store cannot be read or written."""


class BrokerError(MonitorError, RuntimeError):
    """The local Kafka broker cannot be prepared, started or stopped."""


class ModelError(MonitorError, RuntimeError):
    """A model artifact is missing or an inference backend cannot run it."""


class ObservationError(MonitorError, ValueError):
    """A parcel observation table breaks its contract (missing column, bad dtype or value)."""


class EventError(MonitorError, ValueError):
    """A parcel event breaks its JSON Schema or cannot be built from its inputs."""
