"""mmhe: read, align, featurise and benchmark the MMHE multimodal hidden-emotion dataset."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmhe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
