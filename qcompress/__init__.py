"""qcompress: compress language models with quantum and classical methods, and measure honestly
what each method buys."""

from qcompress.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
