"""Markdown tables: the one formatter of the tables that the package and the benchmarks write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], rule: str | Sequence[str] = " --- ") -> str:
    """``| header |``, the rule line, then ``| row |`` per row of ``rows``, cells as given (already formatted).

    ``rule``: the rule cell of every column (``" --- "`` gives ``| --- |``, ``"---"`` gives ``|---|``), or one per
    column (e.g. ``"---:"`` to right-align a column)."""
    rules = [rule] * len(header) if isinstance(rule, str) else list(rule)
    if len(rules) != len(header):
        raise ValueError(f"markdown_table: {len(rules)} rule cells for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(f"{r}|" for r in rules)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
