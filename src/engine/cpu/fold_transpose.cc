// A CPU-only rewrite of the prepared graph, run before layout planning: Transposes around a
// MatMul of two activations (attention's Q, K^T and V, and its head-merging output) become that
// MatMul's operand and destination strides. oneDNN's matmul reads and writes such strided
// matrices as fast as dense ones (bench/README.md), so the copies disappear: four per BERT layer.
#include "engine/cpu/steps.h"

namespace tessera::cpu {

namespace {

std::vector<int64_t> PermOf(const Node& t, size_t rank) {
  std::vector<int64_t> perm = t.GetInts("perm");
  if (perm.empty())  // ONNX default: reverse the axes
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  return perm;
}

}  // namespace

bool IsFloatActivation(const Graph& g, const passes::MetaMap& meta, const std::string& v) {
  if (v.empty() || g.initializers.count(v)) return false;
  auto it = meta.find(v);
  return it != meta.end() && it->second.dtype == DataType::kFloat32;
}

namespace {

std::vector<int64_t> DenseStrides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

}  // namespace

StridedView TransposedRead(const Shape& stored, const std::vector<int64_t>& perm) {
  const auto st = DenseStrides(stored);
  if (perm.empty()) return {stored, st};
  StridedView v;
  for (int64_t ax : perm) {
    v.dims.push_back(stored[ax]);
    v.strides.push_back(st[ax]);
  }
  return v;
}

StridedView TransposedWrite(const Shape& stored, const std::vector<int64_t>& perm) {
  const auto st = DenseStrides(stored);
  if (perm.empty()) return {stored, st};
  StridedView v{Shape(perm.size()), std::vector<int64_t>(perm.size())};
  for (size_t i = 0; i < perm.size(); ++i) {
    v.dims[perm[i]] = stored[i];
    v.strides[perm[i]] = st[i];
  }
  return v;
}

int FoldTransposesIntoMatMul(Graph* g, passes::MetaMap* meta) {
  passes::Uses u(*g);
  int count = 0;
  for (size_t i = 0; i < g->nodes.size(); ++i) {
    Node& mm = g->nodes[i];
    // No residual sum (its seeding copy assumes a dense destination); two activations of one
    // rank (no broadcast rank padding); weights stay on the packed GEMM, which wants dense A.
    if (mm.op != "MatMul" || mm.inputs.size() < 2 || mm.inputs.size() > 3) continue;
    if (!IsFloatActivation(*g, *meta, mm.inputs[0]) || !IsFloatActivation(*g, *meta, mm.inputs[1]))
      continue;
    const size_t rank = meta->at(mm.inputs[0]).shape.size();
    if (rank < 2 || meta->at(mm.inputs[1]).shape.size() != rank) continue;
    for (int operand = 0; operand < 2; ++operand) {
      const std::string v = mm.inputs[operand];
      const int t = u.Producer(v);
      if (t < 0 || u.Single(v) != static_cast<int>(i)) continue;
      Node& tr = g->nodes[t];
      if (tr.op != "Transpose" || !IsFloatActivation(*g, *meta, tr.inputs[0])) continue;
      mm.SetInts(operand == 0 ? "tessera.perm_a" : "tessera.perm_b", PermOf(tr, rank));
      mm.inputs[operand] = tr.inputs[0];
      tr.op.clear();
      ++count;
    }
    const int c = u.Single(mm.outputs[0]);
    if (c < 0 || g->nodes[c].op != "Transpose") continue;
    Node& tr = g->nodes[c];
    const std::vector<int64_t> perm = PermOf(tr, rank);
    // The result's rows must stay rows: a destination whose columns are not contiguous is not
    // one oneDNN writes quickly.
    if (perm.size() != rank || perm.back() != static_cast<int64_t>(rank - 1)) continue;
    mm.SetInts("tessera.perm_y", perm);
    mm.outputs[0] = tr.outputs[0];
    tr.op.clear();
    ++count;
  }
  passes::Sweep(g);
  return count;
}

}  // namespace tessera::cpu
