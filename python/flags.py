"""How a setting of :class:`python.config.TrainConfig` appears on the command line: the one description that both
the config (its fields) and ``python -m python.train`` (its flags and their help) are built from."""

from __future__ import annotations

import argparse
import dataclasses
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FLAG = "flag"  # the key of a Flag in a dataclass field's metadata


@dataclass(frozen=True)
class Flag:
    """The flag of one setting. ``switch``: how a bool setting is given: ``"on"`` (``--name`` sets it),
    ``"off"`` (``--no-name`` clears it) or ``"both"`` (``--name`` / ``--no-name``); None for a valued flag.
    ``name``: the flag when it is not ``--`` and the setting's name with dashes."""

    help: str
    metavar: str | None = None
    choices: Sequence[str] | None = None
    switch: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Setting:
    """A run setting that a dataset adds to :class:`python.config.TrainConfig` (a field with its flag).

    ``kind``: the field's type (``str | None`` where it may be unset). ``check(config)`` raises ValueError naming the
    setting when its value cannot work; it runs on every config, whatever the dataset. Several datasets may declare
    the same setting with the same kind and default: its flag's help joins their ``flag.help`` texts, each once (an
    empty one adds nothing: a dataset that reads a setting which another one documents)."""

    name: str
    kind: Any
    default: Any
    flag: Flag
    check: Callable[[Any], None] | None = None


def flag_field(default: Any, help: str, **flag: Any) -> Any:
    """A dataclass field with its :class:`Flag` (``help`` and the Flag's other arguments)."""
    return dataclasses.field(default=default, metadata={FLAG: Flag(help, **flag)})


def flag_of(field: dataclasses.Field) -> Flag | None:
    return field.metadata.get(FLAG)


def value_type(kind: Any) -> type:
    """The type a flag's text is converted to: ``int | None`` -> int."""
    if isinstance(kind, types.UnionType):
        kinds = [k for k in kind.__args__ if k is not type(None)]
        return kinds[0]
    return kind


def option_string(dest: str, flag: Flag) -> str:
    """What the command line says to set the setting ``dest``: ``--lambda``, ``--no-baseline``."""
    name = flag.name or "--" + dest.replace("_", "-")
    return "--no-" + name.removeprefix("--") if flag.switch == "off" else name


def add_flag(parser: argparse.ArgumentParser, dest: str, kind: Any, flag: Flag) -> None:
    """Add ``flag`` for the setting ``dest``; an absent flag leaves the value None (not given)."""
    name = option_string(dest, flag)
    if flag.switch == "on":
        parser.add_argument(name, dest=dest, action="store_true", default=None, help=flag.help)
    elif flag.switch == "off":
        parser.add_argument(name, dest=dest, action="store_false", default=None, help=flag.help)
    elif flag.switch == "both":
        parser.add_argument(name, dest=dest, action=argparse.BooleanOptionalAction, help=flag.help)
    else:
        kind = value_type(kind)
        metavar = flag.metavar or (None if flag.choices else "X" if kind is float else "N" if kind is int else None)
        parser.add_argument(name, dest=dest, type=None if kind is str else kind, choices=flag.choices,
                            metavar=metavar, help=flag.help)
