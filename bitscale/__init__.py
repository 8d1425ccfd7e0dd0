"""bitscale: a benchmark harness for quantized vision generative models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bitscale")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from bitscale.harness import hookimpl  # noqa: E402  (re-export for plugin authors)

__all__ = ["__version__", "hookimpl"]
