// Executable steps of the CPU backend. Every pointer a step uses is fixed at compile time (the
// arena is allocated once), so Run does no allocation and no lookup.
#pragma once

#include <memory>

#include <oneapi/dnnl/dnnl.hpp>

#include "engine/ops/ops.h"

namespace tessera::cpu {

class Step {
 public:
  virtual ~Step() = default;
  virtual Status Run() = 0;
  // Bytes of constants this step owns (e.g. weights repacked for oneDNN).
  virtual size_t OwnedBytes() const { return 0; }
};

struct DnnlContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// oneDNN-backed ops. `in` follows the node's inputs (undefined tensors for absent ones); every
// constant input is a defined tensor with data. Errors: Unimplemented for unsupported variants.
Result<std::unique_ptr<Step>> MakeConvStep(DnnlContext* ctx, const Node& n,
                                           const std::vector<Tensor>& in, Tensor out);
Result<std::unique_ptr<Step>> MakeMatMulStep(DnnlContext* ctx, const Node& n,
                                             const std::vector<Tensor>& in, Tensor out);
Result<std::unique_ptr<Step>> MakeGemmStep(DnnlContext* ctx, const Node& n,
                                           const std::vector<Tensor>& in, bool c_is_const,
                                           Tensor out);
Result<std::unique_ptr<Step>> MakePoolStep(DnnlContext* ctx, const Node& n, const Tensor& in,
                                           Tensor out);

}  // namespace tessera::cpu
