// The CUDA backend (built only where nvcc is found; callers guard with TESSERA_HAVE_CUDA).
// A model is lowered on the host (src/engine/cuda/program.h) and bound to one GPU: weights are
// uploaded once per engine and shared by every executable compiled from them, activations live
// in one device arena per executable, cuBLASLt runs GEMMs, cuDNN convolutions, Tessera's kernels
// the rest, and the whole step list is captured into a CUDA graph replayed on every run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tessera/engine/engine.h"

namespace tessera {

enum class GpuPrecision {
  kFp32,  // strict FP32 math (cuBLASLt COMPUTE_32F, cuDNN FMA math)
  kTf32,  // FP32 storage, TF32 tensor-core math in GEMMs and convolutions
  kFp16,  // GEMM / convolution operands in FP16 (weights converted once), FP32 accumulation,
          // FP32 everywhere else
  kBf16,  // the same with BF16 operands
};

struct CudaEngineOptions {
  int device = 0;
  GpuPrecision precision = GpuPrecision::kFp32;
  bool cuda_graphs = true;  // capture each executable's steps once and replay them
  // > 0: tell cuBLASLt and cuDNN the slice's SM count (GPU slices). Convolutions then go
  // through cuDNN's graph API, whose heuristics take the target; a plan that cannot be made,
  // or whose output differs from the legacy API's on the same data, falls back to the legacy
  // API (SliceConvCounts says how often).
  int sm_count_target = 0;
  size_t workspace_bytes = size_t{32} << 20;  // per executable, for cuBLASLt and cuDNN
};

// What a CUDA engine's executables offer beyond Executable::Run (which copies host tensors in and
// out and waits): the device-side seam for the runtime's GPU data path and for GPU slices, where
// inputs arrive by DMA from pinned memory, compute runs on the slice's stream and completion is
// a CUDA event the caller records.
class GpuExecutable : public Executable {
 public:
  struct DeviceSlot {
    TensorSpec spec;
    void* device = nullptr;  // in the executable's arena: copy inputs here, outputs from here
    size_t bytes = 0;
  };
  virtual const std::vector<DeviceSlot>& device_inputs() const = 0;
  virtual const std::vector<DeviceSlot>& device_outputs() const = 0;
  // Enqueues the model on `stream` (a cudaStream_t of the executable's GPU, for example one
  // bound to a green context) after device_inputs are in place; returns once queued. One
  // enqueue at a time per executable: the arena is shared by its runs.
  virtual Status Enqueue(void* stream) = 0;
  // Makes `stream` (a slice's stream) the one this executable runs on: library handles are moved
  // to it and the CUDA graph is captured again on it, so that graph launches there run where
  // the stream's green context puts them. Enqueue on that stream then launches the graph.
  virtual Status Bind(void* stream) = 0;
  // The int32 a kernel sets when it meets bad data during the last enqueued run (a Gather index
  // out of range): copy it back with the outputs; non-zero means that run's answer is invalid.
  virtual const void* device_error_word() const = 0;
};

// Unavailable (with the driver's words) when the device cannot be used.
Result<std::unique_ptr<Engine>> CreateCudaEngine(const CudaEngineOptions& options);

// Process-wide: convolutions planned with an SM-count target through cuDNN's graph API, those
// that fell back to the legacy API, and the last fallback's reason.
struct SliceConvCounts {
  int64_t graph_api = 0;
  int64_t fallback = 0;
  std::string last_fallback;
};
SliceConvCounts GetSliceConvCounts();

// Process-wide: convolutions whose bias, residual and activation run inside cuDNN's fused call
// (cudnnConvolutionBiasActivationForward) instead of Tessera's epilogue kernel; those cuDNN's
// rules leave to the kernel (an activation other than ReLU, no bias, an output converted to
// another type, or the graph API's plan on a slice); and those where cuDNN refused the fused
// call or its output differed from the unfused way on the same data, with the last one's reason.
struct ConvFusionCounts {
  int64_t fused = 0;
  int64_t not_fusable = 0;
  int64_t failed = 0;
  std::string last_failure;
};
ConvFusionCounts GetConvFusionCounts();

// Parses "fp32" / "tf32" / "fp16" / "bf16" (the model config's `precision` parameter and
// --precision).
Result<GpuPrecision> ParseGpuPrecision(const std::string& name);

}  // namespace tessera
