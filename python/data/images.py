"""Images held as uint8 in the splits and turned into float32 per minibatch, on the device, by a lookup table.

A loader stores images ``(n, C, H, W)`` uint8 on the CPU (1 byte a pixel instead of 4); its bundle's
``to_model_input`` turns each minibatch into the float32 that F takes, on the device, with :func:`bytes_to_float`
and a table from :func:`byte_table`. The table holds, per channel, the float of each of the 256 byte values
computed on the CPU as the whole split used to be converted up front, so a minibatch gets bitwise the values of
that conversion on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BYTE_VALUES = 256


def byte_table(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(C, 256)`` float32: row ``c`` holds ``(v / 255 - mean[c]) / std[c]`` for the bytes ``v = 0..255``, one
    row per channel (mean 0, std 1: ``v / 255``)."""
    levels = torch.arange(BYTE_VALUES, dtype=torch.float32).div_(255.0)
    return (levels - torch.tensor(mean).view(-1, 1)).div_(torch.tensor(std).view(-1, 1))


def bytes_to_float(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 ``images (b, C, H, W)`` -> float32 ``(b, C, H, W)`` on their device: ``table[c, images[:, c]]`` for
    the ``table (C, 256)`` of :func:`byte_table`."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != table.shape[0]:
        raise ValueError(f"expected uint8 images (b, {table.shape[0]}, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    offsets = BYTE_VALUES * torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return table.to(images.device).flatten()[images.long() + offsets]
