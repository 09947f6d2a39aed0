"""``python -m python.data.mpower``."""

from .cli import main

main()
