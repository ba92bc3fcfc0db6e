// The CPU backend's compile-time plan. Planning decides each value's physical layout (plain
// row-major, or a oneDNN blocked layout chosen by the convolution that produces it), inserts
// reorders only where a consumer needs another layout, and creates the oneDNN primitive
// descriptors. Binding then gives every value its place in the planned arena and builds steps
// whose pointers are fixed, so Run does no allocation and no lookup.
#pragma once

#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <unordered_set>

#include "engine/passes/passes.h"

namespace tessera::cpu {

class Step {
 public:
  virtual ~Step() = default;
  virtual Status Run() = 0;
};

struct DnnlContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// Resolves a value name to its bytes (arena slot, input slot or constant).
using Resolver = std::function<void*(const std::string&)>;

struct PlannedStep {
  std::string label;                       // op type, for profiles
  std::vector<std::string> reads, writes;  // values, for lifetimes
  // A sum post-op's residual and the output it seeds: when the residual's storage dies at this
  // step, the output takes it over and the seeding copy disappears.
  std::string inplace_from, inplace_to;
  std::function<Result<std::unique_ptr<Step>>(const Resolver&)> make;
};

class LayoutPlanner {
 public:
  LayoutPlanner(DnnlContext* ctx, Graph* graph, passes::MetaMap* meta)
      : ctx_(ctx), graph_(graph), meta_(meta) {}

  // Appends the steps computing `n`. Unimplemented for unsupported variants.
  Status PlanNode(const Node& n);
  // Name of a plain-layout version of `v` (v itself, or a reordered copy planned once).
  std::string EnsurePlain(const std::string& v);
  // Name of a version of `v` laid out as `desc` (v itself, or a reordered copy).
  std::string EnsureLayout(const std::string& v, const dnnl::memory::desc& desc);
  dnnl::memory::desc DescOf(const std::string& v) const;
  bool IsConst(const std::string& v) const { return graph_->initializers.count(v) != 0; }
  // Storage root of a value (aliases share their source's storage).
  std::string RootOf(const std::string& v) const;
  // Makes `v` (a root) and everything aliasing it share `root`'s storage.
  void MergeStorage(const std::string& v, const std::string& root);
  // Bytes the value's storage needs (padded blocked layouts can exceed the plain size).
  size_t BytesOf(const std::string& v) const;

  DnnlContext* ctx() { return ctx_; }
  // A constant derived from constant `source` by `make` (repacked, transformed), shared with
  // other compiles of the model through the ConstantCache when there is one. `tag` names the
  // derivation and everything it depends on besides the source's bytes.
  Tensor Derive(const std::string& tag, const std::string& source,
                const std::function<Tensor()>& make);
  // Constant `source` reordered from layout `from` to `to`, through Derive.
  Tensor Reordered(const std::string& source, const dnnl::memory::desc& from,
                   const dnnl::memory::desc& to);
  ConstantCache* cache = nullptr;
  bool winograd = true;     // let eligible 3x3 convs use Winograd (winograd.cc)
  bool packed_gemm = true;  // constant-weight MatMuls on the packed GEMM (packed_matmul.cc)
  Graph* graph() { return graph_; }
  passes::MetaMap* meta() { return meta_; }
  void SetLayout(const std::string& v, const dnnl::memory::desc& d);
  void Add(PlannedStep s) { steps_.push_back(std::move(s)); }
  // Constants the plan repacked and no step reads in their original form.
  void MarkRepacked(const std::string& v) { repacked_.insert(v); }
  void MarkReadRaw(const std::string& v) { read_raw_.insert(v); }
  std::vector<std::string> DroppableConstants() const;

  std::vector<PlannedStep>& steps() { return steps_; }
  std::vector<Tensor>& owned() { return owned_; }

 private:
  DnnlContext* ctx_;
  Graph* graph_;
  passes::MetaMap* meta_;
  std::vector<PlannedStep> steps_;
  std::unordered_map<std::string, dnnl::memory::desc> layout_;  // non-plain values only
  std::unordered_map<std::string, std::string> alias_root_;
  std::unordered_map<std::string, std::string> plain_copy_;
  std::unordered_map<std::string, size_t> extra_bytes_;
  std::unordered_set<std::string> repacked_, read_raw_;
  std::vector<Tensor> owned_;  // repacked weights and scaled biases
  int temp_counter_ = 0;
};

// oneDNN-backed ops (dnnl_steps.cc).
Status PlanConv(LayoutPlanner* p, const Node& n);
Status PlanPool(LayoutPlanner* p, const Node& n);
Status PlanMatMul(LayoutPlanner* p, const Node& n);
Status PlanGemm(LayoutPlanner* p, const Node& n);
// Vectorized oneDNN versions of activations, Softmax and LayerNorm (dnnl_misc.cc); each returns
// false, planning nothing, when the node's variant is not one oneDNN computes exactly.
Result<bool> TryPlanEltwise(LayoutPlanner* p, const Node& n);
// Winograd F(2x2, 3x3) for 3x3 stride-1 convs with channels in multiples of 8 (winograd.cc).
Result<bool> TryPlanWinogradConv(LayoutPlanner* p, const Node& n);
// MatMul with constant 2-D weights on the packed AVX2 GEMM (packed_matmul.cc).
Result<bool> TryPlanPackedMatMul(LayoutPlanner* p, const Node& n);
Result<bool> TryPlanSoftmax(LayoutPlanner* p, const Node& n);
Result<bool> TryPlanLayerNorm(LayoutPlanner* p, const Node& n);
// CPU-only graph rewrite before planning: Transposes feeding or reading a MatMul of two
// activations become its strided operands / destination (attributes tessera.perm_a, perm_b,
// perm_y, which PlanMatMul reads). Returns how many Transposes it removed.
int FoldTransposesIntoMatMul(Graph* g, passes::MetaMap* meta);
// A float tensor computed at run time (not a constant).
bool IsFloatActivation(const Graph& g, const passes::MetaMap& meta, const std::string& v);
// A strided view of a dense tensor: element (i0, i1, ...) at sum(i_d * strides[d]).
struct StridedView {
  Shape dims;
  std::vector<int64_t> strides;
};
// transpose(stored, perm) read in place (perm empty: as stored).
StridedView TransposedRead(const Shape& stored, const std::vector<int64_t>& perm);
// A result y laid out so that transpose(y, perm) is the dense tensor `stored`.
StridedView TransposedWrite(const Shape& stored, const std::vector<int64_t>& perm);
// A reorder from `src` (in `from` layout) to `dst` (in `to` layout).
void PlanReorder(LayoutPlanner* p, const std::string& src, const std::string& dst,
                 const dnnl::memory::desc& from, const dnnl::memory::desc& to);
dnnl::memory::desc PlainDesc(const Shape& s, DataType t);

}  // namespace tessera::cpu
