// Both devices' Primitives (csad::cpu::Primitives and, in a build with CUDA, csad::gpu::Primitives): the one
// include of every csrc/<op>.cpp, whose forward and backward are templates over them.
#pragma once

#include "cpu/common.h"
#ifdef WITH_CUDA
#include "cuda/cuda_common.h"
#endif
