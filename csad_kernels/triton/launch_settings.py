"""Every launch setting of the Triton backend, in one place: block sizes, ``num_warps`` and ``num_stages``.

Each launcher asks here what to launch; nothing else in the backend picks a tile. Three regimes:

- the CPU interpreter (``TRITON_INTERPRET=1``) pays per program and per loop step, not per FLOP: big tiles;
- a GPU with tensor-core dots (``tf32x3`` default, ``tf32``): tiles chosen so that every configuration compiles
  for sm_90 without register spills where the kernel allows it (``python -m benchmarks.resources`` measures
  registers, spills and the instruction mix of every configuration; the table is in benchmarks/README.md);
- a GPU with FMA dots (``ieee``, :func:`fma_dots`): each thread holds more of a tile in registers, so the biggest
  tiles are halved.

Kernels without a ``num_warps`` / ``num_stages`` here use Triton's defaults (4 warps, 3 stages). Every launch
passes :data:`COMPILE_OPTIONS`.
"""

from __future__ import annotations

from csad_kernels.triton._common import block, fma_dots, interpreted

# Pinned on every launch. Floating-point fusion (a*b+c contracted to one FMA, one rounding): Triton 3.9 enables it
# unless TRITON_DEFAULT_FP_FUSION says otherwise and warns that 3.10 disables it by default; pinned, the kernels
# round the same under either version and the sm_90 resource table stays comparable.
COMPILE_OPTIONS: dict[str, bool] = {"enable_fp_fusion": True}


def row_blocks(n: int) -> tuple[int, int]:
    """(rows per program, columns per step) of the row-wise kernels (softmax rows, RWR renormalisation)."""
    return 16, min(256, block(n))


def cosine_tiles(n: int, d: int) -> tuple[int, int]:
    """(block_n, block_d) of the cosine-similarity kernels (square n × n output tiles)."""
    block_d = block(d)
    block_n = min(64 if block_d <= 64 else 32, block(n))
    return min(block_n, 32 if block_d <= 64 else 16) if fma_dots() else block_n, block_d


def gemm_tiles(m: int, p: int, k: int) -> tuple[int, int, int]:
    """(block_m, block_p, block_k) of the batched GEMM of the product-form RWR."""
    big, deep = (128, 128) if interpreted() else (64, 32)
    return min(big, block(m)), min(big, block(p)), min(deep, block(k))


def sce_tiles(m: int, k: int) -> tuple[int, int]:
    """(block_n, block_k) of the symmetric cross-entropy kernels."""
    big, deep = (128, 128) if interpreted() else ((32, 32) if fma_dots() else (64, 32))
    return min(big, block(m)), min(deep, block(k))


def loss_tiles(n: int, extended: bool = False) -> tuple[int, int]:
    """(rows per program, columns per step) of the tiled MI loss kernels. The interpreter: big row blocks, but
    columns in steps of 128 so that N > 128 in the tests runs the online log-sum-exp over several steps.

    ``extended`` (ms or groups): steps of at most 128 columns on a GPU too; with 256 the forward kernel spills
    on sm_90 (ms + groups 112 B, jsd + groups 928 B at 255 registers; none at 128)."""
    block_c = min(128 if interpreted() or extended else 256, block(n))
    block_r = min(64 if interpreted() else 16, block(n))
    return block_r, block_c


def stats_launch(programs: int) -> dict[str, int]:
    """The MI loss's statistics kernel (one program per problem combines ``programs`` partials): a few hundred
    float64 operations per problem, so one warp, in steps of at most 128 partials."""
    return {"BLOCK_P": min(128, block(programs)), "num_warps": 1}


def gram_launch(n: int, d: int) -> dict[str, int]:
    """Block sizes, warps and stages of the three fused Gram + softmax kernels (forward, backward rows, dx).

    sm_90 (``python -m benchmarks.resources``), tf32x3: 4 warps with 32 × 64 tiles (d ≤ 64) or 32 × 32 (d = 128)
    spilled 32-252 B in the forward and row kernels and 140 B / 1.1 KB in dx, at 255 registers; 8 warps with
    64 × 32 tiles (d ≤ 64: wgmma, 64 rows per warpgroup) or 16 × 32 (d > 64) and 2 stages spill nothing
    (dx: 190 / 224 registers). ieee (FMA dots hold a whole d-long row per thread): 4 warps with 32 × 64 or 16 × 32
    spilled 32-96 B (d = 32) and 760-1192 B (d = 128); 8 warps with 32 × 64 or 16 × 16 and 2 stages spill nothing."""
    block_d = block(d)
    if interpreted():
        return {"BLOCK_R": min(64, block(n)), "BLOCK_C": min(128, block(n)), "BLOCK_D": block_d}
    if fma_dots():
        block_r, block_c = (32, 64) if block_d <= 64 else (16, 16)
    else:
        block_r, block_c = (64, 32) if block_d <= 64 else (16, 32)
    return {"BLOCK_R": min(block_r, block(n)), "BLOCK_C": min(block_c, block(n)), "BLOCK_D": block_d,
            "num_warps": 8, "num_stages": 2}  # fmt: skip


def small_path_fits(n: int, d: int, similarity: str) -> bool:
    """Whether the one-program kernel at N ≤ small_n_limit() fits a GPU block: on sm_90 one block gets at most
    227 KB of shared memory, and the graph similarities' backward at N = 64, d = 128 asks for 288 KB (Triton would
    refuse the launch); those problems take the tiled path. Every other size measured asks for at most 192 KB."""
    if interpreted():
        return True
    return similarity == "content" or block(n) <= 32 or block(d) <= 64


def small_launch(n: int, d: int, similarity: str) -> dict[str, int]:
    """The one-program-per-problem estimator kernel (N ≤ small_n_limit()): the whole problem in one block.

    4 warps at N ≤ 32, 8 above. Content similarity at N ≤ 32, d > 64 takes 8 warps too: on sm_90 its forward then
    spills 0 B (was 344 B) and its backward 184 B (was 560 B). The graph similarities spill at every size and warp
    count tried (joint, N = 32, d = 128, 8 warps: forward 12.6 KB, was 5.7 KB; benchmarks/README.md says why)."""
    block_n, block_d = block(n), block(d)
    wide = block_n > 32 or (similarity == "content" and block_d > 64)
    return {"BLOCK_N": block_n, "BLOCK_D": block_d, "num_warps": 8 if wide else 4}
