import torch

from csad_kernels.reference import compute_dtype


def as_scalar_tensor(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor for a learnable scalar given as a tensor or a number (then in like's compute dtype)."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor(value, dtype=compute_dtype(like.dtype), device=like.device)
