#include "engine/prepare.h"

namespace tessera {

Result<PreparedGraph> PrepareGraph(const Graph& graph, const CompileOptions& options) {
  if (options.batch <= 0)
    return Status::InvalidArgument("batch size must be >= 1, got " + std::to_string(options.batch));
  PreparedGraph p;
  p.graph = graph;
  p.original_nodes = static_cast<int>(graph.nodes.size());
  TESSERA_ASSIGN_OR_RETURN(p.input_shapes,
                           passes::ConcreteInputShapes(graph, options.batch, options.input_shapes));
  TESSERA_RETURN_IF_ERROR(passes::InferAndFold(&p.graph, p.input_shapes, &p.meta));
  for (const auto& o : graph.outputs) {
    const auto& m = p.meta[o.name];
    if (!o.dims.empty() && o.dims.size() != m.shape.size())
      return Status::InvalidArgument("graph output '" + o.name + "' is declared with rank " +
                                     std::to_string(o.dims.size()) + " but inferred as " +
                                     ShapeToString(m.shape));
    for (size_t i = 0; i < o.dims.size(); ++i)
      if (o.dims[i] >= 0 && o.dims[i] != m.shape[i])
        return Status::InvalidArgument("graph output '" + o.name + "' is declared with dim " +
                                       std::to_string(i) + " = " + std::to_string(o.dims[i]) +
                                       " but inferred as " + ShapeToString(m.shape) +
                                       " (inconsistent shapes)");
  }
  if (options.optimize) {
    TESSERA_ASSIGN_OR_RETURN(p.report,
                             passes::Optimize(&p.graph, &p.meta, options.constants.get()));
  } else {
    p.report.dead = passes::EliminateDeadNodes(&p.graph);
  }
  return p;
}

void DescribeIo(const PreparedGraph& p, ExecutableInfo* info) {
  for (const auto& in : p.graph.inputs)
    info->inputs.push_back({in.name, in.dtype, p.input_shapes.at(in.name)});
  for (const auto& o : p.graph.outputs) {
    const auto& m = p.meta.at(o.name);
    info->outputs.push_back({o.name, m.dtype, m.shape});
  }
  info->nodes = static_cast<int>(p.graph.nodes.size());
  const auto& r = p.report;
  info->fused = r.folded_bn + r.gelu + r.residual + r.activation + r.bias + r.scale;
  info->folded = p.original_nodes - info->nodes - info->fused;
}

Status CheckRunInputs(const ExecutableInfo& info, const std::vector<Tensor>& inputs) {
  if (inputs.size() != info.inputs.size())
    return Status::InvalidArgument("expected " + std::to_string(info.inputs.size()) +
                                   " inputs, got " + std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& spec = info.inputs[i];
    if (inputs[i].dtype() != spec.dtype)
      return Status::InvalidArgument("input '" + spec.name + "' must be " +
                                     DataTypeName(spec.dtype) + ", got " +
                                     DataTypeName(inputs[i].dtype()));
    if (inputs[i].shape() != spec.shape)
      return Status::InvalidArgument("input '" + spec.name + "' must have shape " +
                                     ShapeToString(spec.shape) + ", got " +
                                     ShapeToString(inputs[i].shape()));
  }
  return Status::OK();
}

}  // namespace tessera
