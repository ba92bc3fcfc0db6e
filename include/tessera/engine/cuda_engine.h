// The CUDA backend (built only where nvcc is found; callers guard with TESSERA_HAVE_CUDA).
// A model is lowered on the host (src/engine/cuda/program.h) and bound to one GPU: weights are
// uploaded once per engine and shared by every executable compiled from them, activations live
// in one device arena per executable, cuBLASLt runs GEMMs, cuDNN convolutions, Tessera's kernels
// the rest, and the whole step list is captured into a CUDA graph replayed on every run.
#pragma once

#include <memory>

#include "tessera/engine/engine.h"

namespace tessera {

enum class GpuPrecision {
  kFp32,  // strict FP32 math (cuBLASLt COMPUTE_32F, cuDNN FMA math)
  kTf32,  // FP32 storage, TF32 tensor-core math in GEMMs and convolutions
};

struct CudaEngineOptions {
  int device = 0;
  GpuPrecision precision = GpuPrecision::kFp32;
  bool cuda_graphs = true;  // capture each executable's steps once and replay them
  int sm_count_target = 0;  // > 0: tell cuBLASLt the slice's SM count (GPU slices)
  size_t workspace_bytes = size_t{32} << 20;  // per executable, for cuBLASLt and cuDNN
};

// Unavailable (with the driver's words) when the device cannot be used.
Result<std::unique_ptr<Engine>> CreateCudaEngine(const CudaEngineOptions& options);

// Parses "fp32" / "tf32" (the model config's `precision` parameter and --precision).
Result<GpuPrecision> ParseGpuPrecision(const std::string& name);

}  // namespace tessera
