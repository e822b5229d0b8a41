"""The installed reprlab version ("0+unknown" in a source tree that was never installed)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reprlab")
except PackageNotFoundError:  # pragma: no cover - a source tree without an install
    __version__ = "0+unknown"
