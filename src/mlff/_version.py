"""The version of mlff, in one place (read by the package, model files and reports)."""

__version__ = "0.1.0"
