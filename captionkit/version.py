"""The package version, in a module of its own so that any layer can stamp files with it (pyproject reads it too)."""

__version__ = "0.1.0"
