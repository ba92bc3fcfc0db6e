// A host interpreter of the CUDA backend's Program: every instruction with plain loops and the
// device's scalar math (math.h). It is slow and exists for tests: running a lowered model here
// and comparing with the CPU engine checks the lowering (strides, GEMM mapping, arena plan) on
// machines without a GPU.
#pragma once

#include "engine/cuda/program.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera::cuda {

// Runs `program` on `inputs` (graph-input order, the compiled dtypes and shapes). An instruction
// that meets bad data (a Gather index out of range) fails the run with InvalidArgument, as the
// GPU executable does through the arena's error word.
Status RunOnHost(const Program& program, const std::vector<Tensor>& inputs,
                 std::vector<Tensor>* outputs);

// An Engine that lowers like the CUDA backend and runs the Program with RunOnHost: `tessera infer
// --engine cuda-host`, to see what the GPU path computes on a machine without a GPU. FP16 / BF16
// precisions round GEMM and convolution operands as the GPU does; TF32 runs as FP32 here. Its
// executables are GpuExecutables over host memory; with `emulated_gpu` >= 0 the engine says it
// runs on that GPU ("cuda:N"), so that `tessera serve --engine cuda-host` puts its models on an
// emulated GPU's slices (runtime/emulated_gpu.h).
std::unique_ptr<Engine> CreateHostProgramEngine(GpuPrecision precision = GpuPrecision::kFp32,
                                                int emulated_gpu = -1);

}  // namespace tessera::cuda
