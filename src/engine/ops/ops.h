// The op library: for every supported ONNX op, shape/type inference and (where the op is not
// delegated to a backend library) a portable kernel. Constant folding and the CPU backend share
// these kernels, so a folded subgraph computes exactly what it would at run time.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tessera/model/graph.h"

namespace tessera::ops {

// What inference knows about one value: type, concrete shape, and its data when constant.
struct ValueMeta {
  DataType dtype = DataType::kInvalid;
  Shape shape;
  const Tensor* constant = nullptr;  // non-null when the value is known at compile time
};

using InferFn = std::function<Status(const Node&, const std::vector<const ValueMeta*>& in,
                                     std::vector<ValueMeta>* out)>;
// Computes outputs into pre-allocated tensors (shapes/dtypes as inferred). Inputs that are
// omitted optional inputs are null.
using KernelFn = std::function<Status(const Node&, const std::vector<const Tensor*>& in,
                                      std::vector<Tensor>& out)>;

struct OpDef {
  InferFn infer;
  KernelFn kernel;     // null when only a backend implements it (Conv, MatMul, pools, Gemm)
  bool alias = false;  // output 0 is input 0's bytes reinterpreted (Reshape family)
};

// The def for `op`, or null when the op is unsupported.
const OpDef* FindOp(const std::string& op);
// Sorted names of every supported op (for docs and errors).
std::vector<std::string> SupportedOps();

// Registration, called once from each family's translation unit (see ops.cc).
void RegisterElementwise();
void RegisterMovement();
void RegisterReduceNorm();
void RegisterNn();
void RegisterIndexing();
void Register(const std::string& op, OpDef def);

// Helpers shared by families.
Result<Shape> BroadcastShapes(const Shape& a, const Shape& b);
int64_t NormalizeAxis(int64_t axis, int64_t rank);
Status CheckInputs(const Node& n, const std::vector<const ValueMeta*>& in, size_t min_count);
// Reads a constant int tensor input (axes, shape, pads...) into a vector. FailedPrecondition
// when the input is not a compile-time constant.
Result<std::vector<int64_t>> ConstInts(const Node& n, const std::vector<const ValueMeta*>& in,
                                       size_t index);
// Metas describing run-time tensors (constants included), for kernels that reuse an op's
// inference logic; `storage` holds them.
std::vector<const ValueMeta*> MetasOf(const std::vector<const Tensor*>& in,
                                      std::vector<ValueMeta>* storage);
// Row-major element strides of a shape.
std::vector<int64_t> ContiguousStrides(const Shape& s);
// Number of threads worth using for `work` elementary operations.
bool WorthParallel(int64_t work);

}  // namespace tessera::ops
