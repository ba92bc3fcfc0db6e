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
cudaError_t LaunchReduce(const ReduceInstr& r, const float* in, float* out, cudaStream_t stream);
cudaError_t LaunchSoftmax(const SoftmaxInstr& s, const float* in, float* out, cudaStream_t stream);
// `mean` / `inv_std` (per row) may be null.
cudaError_t LaunchLayerNorm(const LayerNormInstr& l, const float* in, const float* scale,
                            const float* bias, float* out, float* mean, float* inv_std,
                            cudaStream_t stream);
// Sets *error to 1 when an index is out of range (that row is zero-filled).
cudaError_t LaunchGather(const GatherInstr& g, const void* data, const void* index, void* out,
                         int32_t* error, cudaStream_t stream);
cudaError_t LaunchPad(const PadInstr& p, const void* in, void* out, cudaStream_t stream);
cudaError_t LaunchResize(const ResizeInstr& r, const float* x, const int64_t* i0, const int64_t* i1,
                         const float* w, float* y, cudaStream_t stream);
cudaError_t LaunchPool(const PoolInstr& p, const float* x, float* y, cudaStream_t stream);
// y[n, k, :] = act(src[n, k, :] + bias[k] + residual[n, k, :]) over `planes` = N x K planes of
// `plane` elements; src (of src_type) may be y itself; bias and residual may be null.
cudaError_t LaunchChannelEpilogue(const void* src, DataType src_type, float* y, const float* bias,
                                  const float* residual, int64_t planes, int64_t channels,
                                  int64_t plane, Act act, float a, float b, cudaStream_t stream);
// y = act(y) over n elements.
cudaError_t LaunchActInPlace(float* y, int64_t n, Act act, float a, float b, cudaStream_t stream);

}  // namespace tessera::cuda
