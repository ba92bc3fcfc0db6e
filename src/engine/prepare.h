// The backend-independent half of compiling: concrete shapes, folding, fusion.
#pragma once

#include "engine/passes/passes.h"
#include "tessera/engine/engine.h"

namespace tessera {

struct PreparedGraph {
  Graph graph;
  passes::MetaMap meta;
  std::map<std::string, Shape> input_shapes;
  passes::FusionReport report;
  int original_nodes = 0;
};

Result<PreparedGraph> PrepareGraph(const Graph& graph, const CompileOptions& options);

// Fills info.inputs / outputs / nodes / fused / folded from a prepared graph.
void DescribeIo(const PreparedGraph& p, ExecutableInfo* info);

// Checks run-time inputs against the compiled specs; InvalidArgument names the first mismatch.
Status CheckRunInputs(const ExecutableInfo& info, const std::vector<Tensor>& inputs);

}  // namespace tessera
