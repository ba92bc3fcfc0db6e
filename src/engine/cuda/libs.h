// cuBLASLt and cuDNN, loaded with dlopen the first time a CUDA engine is created. Linking them
// would map ~550 MB of libraries into every tessera process (about 200 MB of resident memory
// even for `tessera --help` or a CPU-only server) and would stop the binary from starting at all
// where they are not on the library path; loaded on demand, a missing library is one clear error.
#pragma once

#include <cublasLt.h>
#include <cudnn.h>

#include "tessera/core/status.h"

namespace tessera::cuda {

// clang-format off
#define TESSERA_CUBLASLT_FUNCTIONS(X)     \
  X(cublasLtCreate)                       \
  X(cublasLtDestroy)                      \
  X(cublasLtGetStatusString)              \
  X(cublasLtMatmulDescCreate)             \
  X(cublasLtMatmulDescDestroy)            \
  X(cublasLtMatmulDescSetAttribute)       \
  X(cublasLtMatrixLayoutCreate)           \
  X(cublasLtMatrixLayoutDestroy)          \
  X(cublasLtMatrixLayoutSetAttribute)     \
  X(cublasLtMatmulPreferenceCreate)       \
  X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatmulPreferenceDestroy)      \
  X(cublasLtMatmulAlgoGetHeuristic)       \
  X(cublasLtMatmul)

#define TESSERA_CUDNN_FUNCTIONS(X)          \
  X(cudnnCreate)                            \
  X(cudnnDestroy)                           \
  X(cudnnSetStream)                         \
  X(cudnnGetErrorString)                    \
  X(cudnnCreateTensorDescriptor)            \
  X(cudnnDestroyTensorDescriptor)           \
  X(cudnnSetTensor4dDescriptor)             \
  X(cudnnCreateFilterDescriptor)            \
  X(cudnnDestroyFilterDescriptor)           \
  X(cudnnSetFilter4dDescriptor)             \
  X(cudnnCreateConvolutionDescriptor)       \
  X(cudnnDestroyConvolutionDescriptor)      \
  X(cudnnSetConvolution2dDescriptor)        \
  X(cudnnSetConvolutionGroupCount)          \
  X(cudnnSetConvolutionMathType)            \
  X(cudnnGetConvolution2dForwardOutputDim)  \
  X(cudnnFindConvolutionForwardAlgorithmEx) \
  X(cudnnConvolutionForward)                \
  X(cudnnConvolutionBiasActivationForward)  \
  X(cudnnCreateActivationDescriptor)        \
  X(cudnnSetActivationDescriptor)           \
  X(cudnnDestroyActivationDescriptor)       \
  X(cudnnBackendCreateDescriptor)           \
  X(cudnnBackendDestroyDescriptor)          \
  X(cudnnBackendSetAttribute)               \
  X(cudnnBackendGetAttribute)               \
  X(cudnnBackendFinalize)                   \
  X(cudnnBackendExecute)
// clang-format on

struct Libs {
#define TESSERA_DECLARE_FN(name) decltype(&::name) name = nullptr;
  TESSERA_CUBLASLT_FUNCTIONS(TESSERA_DECLARE_FN)
  TESSERA_CUDNN_FUNCTIONS(TESSERA_DECLARE_FN)
#undef TESSERA_DECLARE_FN
};

// The loaded functions (loaded once, process-wide), or Unavailable naming the library that could
// not be opened or the symbol it lacks.
Result<const Libs*> LoadLibs();

}  // namespace tessera::cuda
