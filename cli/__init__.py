"""Command line for people outside ComfyUI (launcher: ``python paragonsr2.py --help``).

ComfyUI never imports this subpackage; it uses only relative imports so it runs from the
pack folder whatever that folder is called.
"""

from .app import main

__all__ = ["main"]
