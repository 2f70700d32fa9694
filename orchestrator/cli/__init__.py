"""The ``coe`` command line (``orchestrator.cli.main``)."""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
