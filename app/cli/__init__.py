"""The command line: `python -m app COMMAND` and the helpers its commands share."""
from app.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
