"""The package version, in a module of its own so that nncli/__init__.py and the run folder both import it (no cycle)."""

__version__ = "0.1.0"
