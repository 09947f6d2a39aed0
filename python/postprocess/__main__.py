"""``python -m python.postprocess``."""

from .. import cli
from .cli import main

cli.run(main)
