// Graph passes run when a model is compiled for one batch size: shape inference with constant
// folding, dead-node removal, fusions, and the activation memory plan.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/ops/ops.h"
#include "tessera/engine/engine.h"
#include "tessera/model/graph.h"

namespace tessera::passes {

using MetaMap = std::unordered_map<std::string, ops::ValueMeta>;

// Gives every graph input a concrete shape: dynamic dim 0 becomes `batch`; other dynamic dims
// must be provided in `overrides` (name -> full shape). InvalidArgument otherwise.
Result<std::map<std::string, Shape>> ConcreteInputShapes(
    const Graph& g, int64_t batch, const std::map<std::string, Shape>& overrides);

// Infers dtype and shape of every value for the given input shapes and folds every node whose
// inputs are all constant (including Shape of any value): folded nodes disappear and their
// outputs become initializers. Unimplemented names an unsupported op and its node.
Status InferAndFold(Graph* g, const std::map<std::string, Shape>& input_shapes, MetaMap* meta);

// Einsum (one or two FP32 operands, no repeated letter within an operand) as the ops Tessera runs:
// ReduceSum, Transpose, Reshape, MatMul (see einsum.cc), given its operands' metas. The Reshape
// shapes and ReduceSum axes are added to g's initializers; the last node writes n's output.
// InvalidArgument for an equation that does not fit the operands, Unimplemented for the forms
// not supported.
Result<std::vector<Node>> DecomposeEinsum(const Node& n,
                                          const std::vector<const ops::ValueMeta*>& in, Graph* g);

// Removes nodes whose outputs reach no graph output, and unused initializers. Returns the count.
int EliminateDeadNodes(Graph* g);

// Who reads and who writes each value of a graph, for rewrites (indices into g.nodes, valid
// until the node list changes).
struct Uses {
  std::unordered_map<std::string, std::vector<size_t>> users;
  std::unordered_set<std::string> graph_outputs;
  std::unordered_map<std::string, size_t> producer;

  explicit Uses(const Graph& g);
  // The single consumer of `v`, or -1 (also for graph outputs, which a rewrite must keep).
  int Single(const std::string& v) const;
  int Producer(const std::string& v) const;
};

// Removes the nodes a rewrite flagged dead (op cleared), in one sweep.
void Sweep(Graph* g);

// Fusions; each returns how many patterns it rewrote. `meta` stays valid for all values kept.
// `cache` (may be null) shares the folded weights across compiles of the same model.
int FoldBatchNormIntoConv(Graph* g, MetaMap* meta, ConstantCache* cache = nullptr);
int FuseGeluPattern(Graph* g, MetaMap* meta);
int FuseResidualAdd(Graph* g, MetaMap* meta);  // Conv + Add(residual) -> Conv with sum
int FuseActivation(Graph* g, MetaMap* meta);   // Conv/MatMul/Gemm + activation
int FuseMatMulBias(Graph* g, MetaMap* meta);   // MatMul + Add(const bias)
int FuseMatMulScale(Graph* g, MetaMap* meta);  // bias-free MatMul + Div/Mul by a scalar

struct FusionReport {
  int folded_bn = 0, gelu = 0, residual = 0, activation = 0, bias = 0, scale = 0, dead = 0;
};
// Runs every fusion in the right order, then dead-node removal and a topological re-sort.
Result<FusionReport> Optimize(Graph* g, MetaMap* meta, ConstantCache* cache = nullptr);

// Activation memory plan: values with lifetimes [first, last] (step indices, inclusive) get
// offsets in one arena so that values alive at the same time never overlap.
struct BufferRequest {
  std::string name;
  size_t bytes = 0;
  int first = 0;
  int last = 0;
};
struct MemoryPlan {
  std::unordered_map<std::string, size_t> offsets;
  size_t arena_bytes = 0;  // peak: the arena size
  size_t naive_bytes = 0;  // sum of all buffers: what no reuse would cost
};
MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests, size_t alignment = 64);

}  // namespace tessera::passes
