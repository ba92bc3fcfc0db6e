#include <deque>
#include <iterator>
#include <unordered_set>

#include "engine/passes/passes.h"

namespace tessera::passes {
namespace {

constexpr int64_t kMaxValueElements = int64_t{1} << 34;
constexpr size_t kMaxFoldBytes = size_t{64} << 20;  // larger constants are computed at run time

// Rejects negative dims and element counts that overflow or exceed any real model's.
Status CheckShape(const std::string& what, const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0)
      return Status::InvalidArgument(what + " would have a negative dimension " + ShapeToString(s));
    if (d > 0 && n > kMaxValueElements / d)
      return Status::InvalidArgument(what + " would be implausibly large " + ShapeToString(s));
    n *= d;
  }
  return Status::OK();
}

}  // namespace

Result<std::map<std::string, Shape>> ConcreteInputShapes(
    const Graph& g, int64_t batch, const std::map<std::string, Shape>& overrides) {
  std::map<std::string, Shape> out;
  for (const auto& [name, _] : overrides)
    if (!g.FindInput(name)) return Status::InvalidArgument("no graph input named '" + name + "'");
  for (const auto& in : g.inputs) {
    auto it = overrides.find(in.name);
    if (it != overrides.end()) {
      const Shape& s = it->second;
      if (!in.dims.empty() && s.size() != in.dims.size())
        return Status::InvalidArgument("input '" + in.name + "' has rank " +
                                       std::to_string(in.dims.size()) + ", got shape " +
                                       ShapeToString(s));
      for (size_t i = 0; i < in.dims.size(); ++i)
        if (in.dims[i] >= 0 && in.dims[i] != s[i])
          return Status::InvalidArgument("input '" + in.name + "' dim " + std::to_string(i) +
                                         " must be " + std::to_string(in.dims[i]) + ", got " +
                                         ShapeToString(s));
      TESSERA_RETURN_IF_ERROR(CheckShape("input '" + in.name + "'", s));
      out[in.name] = s;
      continue;
    }
    Shape s;
    for (size_t i = 0; i < in.dims.size(); ++i) {
      if (in.dims[i] >= 0) {
        s.push_back(in.dims[i]);
      } else if (i == 0) {
        s.push_back(batch);
      } else {
        return Status::InvalidArgument("input '" + in.name + "' has dynamic dim " +
                                       std::to_string(i) + " ('" + in.dim_names[i] +
                                       "'); give its full shape (e.g. --input or config dims)");
      }
    }
    TESSERA_RETURN_IF_ERROR(CheckShape("input '" + in.name + "'", s));
    out[in.name] = s;
  }
  return out;
}

Status InferAndFold(Graph* g, const std::map<std::string, Shape>& input_shapes, MetaMap* meta) {
  meta->clear();
  for (const auto& in : g->inputs) {
    auto it = input_shapes.find(in.name);
    if (it == input_shapes.end())
      return Status::InvalidArgument("no shape for graph input '" + in.name + "'");
    (*meta)[in.name] = {in.dtype, it->second, nullptr};
  }
  for (auto& [name, t] : g->initializers) (*meta)[name] = {t.dtype(), t.shape(), &t};

  std::vector<Node> kept;
  kept.reserve(g->nodes.size());
  // A worklist, so that a node rewritten into others (Einsum) has them inferred in its place.
  std::deque<Node> work(std::make_move_iterator(g->nodes.begin()),
                        std::make_move_iterator(g->nodes.end()));
  while (!work.empty()) {
    Node n = std::move(work.front());
    work.pop_front();
    if (n.op == "Einsum") {
      std::vector<const ops::ValueMeta*> in;
      for (const auto& v : n.inputs) {
        auto it = meta->find(v);
        if (v.empty() || it == meta->end())
          return Status::InvalidArgument(n.Describe() + " uses unknown value '" + v + "'");
        in.push_back(&it->second);
      }
      TESSERA_ASSIGN_OR_RETURN(std::vector<Node> parts, DecomposeEinsum(n, in, g));
      for (const auto& part : parts)
        for (const auto& v : part.inputs)
          if (!meta->count(v))
            if (auto c = g->initializers.find(v); c != g->initializers.end())
              (*meta)[v] = {c->second.dtype(), c->second.shape(), &c->second};
      work.insert(work.begin(), std::make_move_iterator(parts.begin()),
                  std::make_move_iterator(parts.end()));
      continue;
    }
    const ops::OpDef* def = ops::FindOp(n.op);
    if (!def)
      return Status::Unimplemented("unsupported op '" + n.op + "' in node '" + n.name +
                                   "'; supported ops are listed by `tessera ops`");
    if (n.op == "Softmax" || n.op == "LogSoftmax") n.SetInt("tessera.opset", g->opset);
    std::vector<const ops::ValueMeta*> in(n.inputs.size(), nullptr);
    bool all_const = true;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      auto it = meta->find(n.inputs[i]);
      if (it == meta->end())
        return Status::InvalidArgument(n.Describe() + " uses unknown value '" + n.inputs[i] + "'");
      in[i] = &it->second;
      all_const = all_const && it->second.constant;
    }
    // Trailing omitted optional inputs are dropped so kernels see the real arity.
    while (!in.empty() && !in.back()) {
      in.pop_back();
      n.inputs.pop_back();
    }
    if (n.outputs.empty() || n.outputs[0].empty())
      return Status::InvalidArgument(n.Describe() + " has no output");
    std::vector<ops::ValueMeta> out(n.outputs.size());
    Status st = def->infer(n, in, &out);
    if (!st.ok()) return st;
    for (size_t k = 0; k < out.size(); ++k)
      if (!n.outputs[k].empty() && out[k].dtype == DataType::kInvalid)
        return Status::InvalidArgument(n.Describe() + " declares " +
                                       std::to_string(n.outputs.size()) + " outputs; '" + n.op +
                                       "' does not produce output " + std::to_string(k));
    size_t out_bytes = 0;
    for (size_t k = 0; k < out.size(); ++k) {
      TESSERA_RETURN_IF_ERROR(
          CheckShape(n.Describe() + " output " + std::to_string(k), out[k].shape));
      out_bytes += static_cast<size_t>(NumElements(out[k].shape)) * DataTypeSize(out[k].dtype);
    }
    const bool shape_only = n.op == "Shape" || n.op == "Size";
    if ((all_const || shape_only) && def->kernel && !in.empty() && out_bytes <= kMaxFoldBytes) {
      std::vector<Tensor> in_t(in.size());
      std::vector<const Tensor*> in_p(in.size(), nullptr);
      for (size_t i = 0; i < in.size(); ++i) {
        if (!in[i]) continue;
        in_t[i] =
            in[i]->constant ? *in[i]->constant : Tensor::View(in[i]->dtype, in[i]->shape, nullptr);
        in_p[i] = &in_t[i];
      }
      std::vector<Tensor> out_t;
      for (auto& m : out) out_t.push_back(Tensor::Allocate(m.dtype, m.shape));
      st = def->kernel(n, in_p, out_t);
      if (!st.ok()) return st.WithContext("constant folding");
      for (size_t k = 0; k < n.outputs.size(); ++k) {
        if (n.outputs[k].empty()) continue;
        Tensor& stored = g->initializers[n.outputs[k]] = out_t[k];
        (*meta)[n.outputs[k]] = {out[k].dtype, out[k].shape, &stored};
      }
      continue;
    }
    for (size_t k = 0; k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty()) (*meta)[n.outputs[k]] = out[k];
    kept.push_back(std::move(n));
  }
  g->nodes = std::move(kept);
  for (const auto& o : g->outputs)
    if (!meta->count(o.name))
      return Status::InvalidArgument("graph output '" + o.name + "' is never produced");
  return Status::OK();
}

int EliminateDeadNodes(Graph* g) {
  // Walk back from the graph outputs through producers; independent of node order, so it is
  // safe between a fusion and the topological re-sort that follows it.
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g->nodes.size(); ++i)
    for (const auto& o : g->nodes[i].outputs) producer[o] = i;
  std::unordered_set<std::string> needed;
  std::vector<bool> keep(g->nodes.size(), false);
  std::vector<std::string> work;
  for (const auto& o : g->outputs) work.push_back(o.name);
  while (!work.empty()) {
    std::string v = std::move(work.back());
    work.pop_back();
    if (v.empty() || !needed.insert(v).second) continue;
    auto it = producer.find(v);
    if (it == producer.end() || keep[it->second]) continue;
    keep[it->second] = true;
    for (const auto& in : g->nodes[it->second].inputs) work.push_back(in);
  }
  std::vector<Node> kept;
  int removed = 0;
  for (size_t i = 0; i < g->nodes.size(); ++i) {
    if (keep[i])
      kept.push_back(std::move(g->nodes[i]));
    else
      ++removed;
  }
  g->nodes = std::move(kept);
  for (auto it = g->initializers.begin(); it != g->initializers.end();)
    it = needed.count(it->first) ? std::next(it) : g->initializers.erase(it);
  return removed;
}

}  // namespace tessera::passes
