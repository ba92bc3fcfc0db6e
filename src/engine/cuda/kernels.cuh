// Tessera's own CUDA kernels for the Program instructions the libraries do not cover. Each
// launcher enqueues on `stream` and returns the launch error (cudaSuccess when queued).
#pragma once

#include <cuda_runtime.h>

#include "engine/cuda/program.h"

namespace tessera::cuda {

cudaError_t LaunchEw(const EwInstr& e, const void* in0, const void* in1, const void* in2, void* out,
                     cudaStream_t stream);
cudaError_t LaunchCopy(const CopyInstr& c, const void* in, void* out, cudaStream_t stream);
cudaError_t LaunchFill(const FillInstr& f, void* out, cudaStream_t stream);
// Reduce, softmax, layernorm, resize and pool read and write activations in the instruction's
// `type` (FP32, FP16 or BF16; cudaErrorInvalidValue for another).
cudaError_t LaunchReduce(const ReduceInstr& r, const void* in, void* out, cudaStream_t stream);
cudaError_t LaunchSoftmax(const SoftmaxInstr& s, const void* in, void* out, cudaStream_t stream);
// `mean` / `inv_std` (per row, in l.stat_type) may be null; scale and bias are FP32.
cudaError_t LaunchLayerNorm(const LayerNormInstr& l, const void* in, const float* scale,
                            const float* bias, void* out, void* mean, void* inv_std,
                            cudaStream_t stream);
// Sets *error to 1 when an index is out of range (that row is zero-filled).
cudaError_t LaunchGather(const GatherInstr& g, const void* data, const void* index, void* out,
                         int32_t* error, cudaStream_t stream);
cudaError_t LaunchPad(const PadInstr& p, const void* in, void* out, cudaStream_t stream);
cudaError_t LaunchResize(const ResizeInstr& r, const void* x, const int64_t* i0, const int64_t* i1,
                         const float* w, void* y, cudaStream_t stream);
cudaError_t LaunchPool(const PoolInstr& p, const void* x, void* y, cudaStream_t stream);
// y[n, k, :] = act(src[n, k, :] + bias[k] + residual[n, k, :]) over `planes` = N x K planes of
// `plane` elements; y and residual are stored as y_type, src as src_type (src may be y itself);
// bias (FP32) and residual may be null.
cudaError_t LaunchChannelEpilogue(const void* src, DataType src_type, void* y, DataType y_type,
                                  const float* bias, const void* residual, int64_t planes,
                                  int64_t channels, int64_t plane, Act act, float a, float b,
                                  cudaStream_t stream);
// y = act(y) over n elements stored as `type`.
cudaError_t LaunchActInPlace(void* y, DataType type, int64_t n, Act act, float a, float b,
                             cudaStream_t stream);

}  // namespace tessera::cuda
