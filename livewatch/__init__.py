"""livewatch: activity detection on live HLS video."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("livewatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
