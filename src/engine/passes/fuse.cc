// Fusions. Each matches a producer whose output has exactly one consumer (and is not a graph
// output), rewrites the producer to absorb the consumer, and drops the consumer.
#include <cmath>
#include <unordered_set>

#include "engine/passes/passes.h"

namespace tessera::passes {
namespace {

const Tensor* Const(const Graph& g, const std::string& v) {
  auto it = g.initializers.find(v);
  return it == g.initializers.end() ? nullptr : &it->second;
}

bool IsScalarConst(const Graph& g, const std::string& v, float value, float tol) {
  const Tensor* t = Const(g, v);
  return t && t->numel() == 1 && t->dtype() == DataType::kFloat32 &&
         std::fabs(t->data<float>()[0] - value) <= tol;
}

// The other input of a binary node, given one of them.
const std::string* Other(const Node& n, const std::string& v) {
  if (n.inputs.size() != 2) return nullptr;
  if (n.inputs[0] == v) return &n.inputs[1];
  if (n.inputs[1] == v) return &n.inputs[0];
  return nullptr;
}

}  // namespace

Uses::Uses(const Graph& g) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty()) users[in].push_back(i);
    for (const auto& o : g.nodes[i].outputs) producer[o] = i;
  }
  for (const auto& o : g.outputs) graph_outputs.insert(o.name);
}

int Uses::Single(const std::string& v) const {
  if (graph_outputs.count(v)) return -1;
  auto it = users.find(v);
  if (it == users.end() || it->second.size() != 1) return -1;
  return static_cast<int>(it->second[0]);
}

int Uses::Producer(const std::string& v) const {
  auto it = producer.find(v);
  return it == producer.end() ? -1 : static_cast<int>(it->second);
}

void Sweep(Graph* g) {
  std::vector<Node> kept;
  for (auto& n : g->nodes)
    if (!n.op.empty()) kept.push_back(std::move(n));
  g->nodes = std::move(kept);
}

int FoldBatchNormIntoConv(Graph* g, MetaMap* meta, ConstantCache* cache) {
  Uses u(*g);
  int count = 0;
  for (auto& bn : g->nodes) {
    if (bn.op != "BatchNormalization" || bn.outputs.size() != 1) continue;
    int p = u.Producer(bn.inputs[0]);
    if (p < 0 || u.Single(bn.inputs[0]) < 0) continue;
    Node& conv = g->nodes[p];
    if (conv.op != "Conv" || conv.inputs.size() > 3 || conv.Has("tessera.act")) continue;
    const Tensor* w = Const(*g, conv.inputs[1]);
    const Tensor* b = conv.inputs.size() > 2 ? Const(*g, conv.inputs[2]) : nullptr;
    if (!w || (conv.inputs.size() > 2 && !b)) continue;
    const Tensor *sc = Const(*g, bn.inputs[1]), *sh = Const(*g, bn.inputs[2]),
                 *mu = Const(*g, bn.inputs[3]), *var = Const(*g, bn.inputs[4]);
    if (!sc || !sh || !mu || !var) continue;
    if (w->dtype() != DataType::kFloat32) continue;
    const int64_t oc = w->dim(0), per = w->numel() / oc;
    const float eps = bn.GetFloat("epsilon", 1e-5f);
    auto scale = [=](int64_t c) {
      return sc->data<float>()[c] / std::sqrt(var->data<float>()[c] + eps);
    };
    const std::string tag = "bn-fold eps=" + std::to_string(eps);
    auto make_w = [&] {
      Tensor nw = Tensor::Allocate(DataType::kFloat32, w->shape());
      for (int64_t c = 0; c < oc; ++c) {
        const float s = scale(c);
        for (int64_t k = 0; k < per; ++k)
          nw.data<float>()[c * per + k] = w->data<float>()[c * per + k] * s;
      }
      return nw;
    };
    auto make_b = [&] {
      Tensor nb = Tensor::Allocate(DataType::kFloat32, {oc});
      for (int64_t c = 0; c < oc; ++c) {
        const float b0 = b ? b->data<float>()[c] : 0.0f;
        nb.data<float>()[c] = (b0 - mu->data<float>()[c]) * scale(c) + sh->data<float>()[c];
      }
      return nb;
    };
    Tensor nw = cache ? cache->GetOrMake(tag + " weight", {w, sc, var}, make_w) : make_w();
    Tensor nb = cache ? cache->GetOrMake(tag + " bias", {b, sc, sh, mu, var}, make_b) : make_b();
    const std::string wn = conv.name + ".bn_folded_weight", bname = conv.name + ".bn_folded_bias";
    (*meta)[wn] = {DataType::kFloat32, nw.shape(), &(g->initializers[wn] = nw)};
    (*meta)[bname] = {DataType::kFloat32, nb.shape(), &(g->initializers[bname] = nb)};
    conv.inputs.resize(3);
    conv.inputs[1] = wn;
    conv.inputs[2] = bname;
    conv.outputs = bn.outputs;
    bn.op.clear();
    ++count;
  }
  Sweep(g);
  return count;
}

int FuseGeluPattern(Graph* g, MetaMap* meta) {
  // torch's erf GELU: Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)
  Uses u(*g);
  int count = 0;
  for (auto& erf : g->nodes) {
    if (erf.op != "Erf") continue;
    int pd = u.Producer(erf.inputs[0]);
    if (pd < 0 || u.Single(erf.inputs[0]) < 0) continue;
    Node& div = g->nodes[pd];
    std::string x;
    if (div.op == "Div" && IsScalarConst(*g, div.inputs[1], 1.41421356f, 1e-4f))
      x = div.inputs[0];
    else if (div.op == "Mul" && IsScalarConst(*g, div.inputs[1], 0.70710678f, 1e-4f))
      x = div.inputs[0];
    else
      continue;
    int pa = u.Single(erf.outputs[0]);
    if (pa < 0) continue;
    Node& add = g->nodes[pa];
    const std::string* one = Other(add, erf.outputs[0]);
    if (add.op != "Add" || !one || !IsScalarConst(*g, *one, 1.0f, 0)) continue;
    int pm = u.Single(add.outputs[0]);
    if (pm < 0) continue;
    Node& mul = g->nodes[pm];
    const std::string* xm = Other(mul, add.outputs[0]);
    if (mul.op != "Mul" || !xm || *xm != x) continue;
    int ph = u.Single(mul.outputs[0]);
    if (ph < 0) continue;
    Node& half = g->nodes[ph];
    const std::string* h = Other(half, mul.outputs[0]);
    if (half.op != "Mul" || !h || !IsScalarConst(*g, *h, 0.5f, 0)) continue;
    Node gelu;
    gelu.op = "Gelu";
    gelu.name = erf.name + ".gelu";
    gelu.inputs = {x};
    gelu.outputs = half.outputs;
    div.op.clear();
    add.op.clear();
    mul.op.clear();
    half.op.clear();
    erf = std::move(gelu);
    ++count;
  }
  Sweep(g);
  (void)meta;
  return count;
}

int FuseMatMulScale(Graph* g, MetaMap* meta) {
  Uses u(*g);
  int count = 0;
  for (auto& mm : g->nodes) {
    if (mm.op != "MatMul" || mm.inputs.size() != 2 || mm.Has("tessera.act") ||
        mm.Has("tessera.scale"))
      continue;
    int pc = u.Single(mm.outputs[0]);
    if (pc < 0) continue;
    Node& sc = g->nodes[pc];
    const std::string* c = Other(sc, mm.outputs[0]);
    if ((sc.op != "Div" && sc.op != "Mul") || !c ||
        (sc.op == "Div" && sc.inputs[0] != mm.outputs[0]))
      continue;
    const Tensor* t = Const(*g, *c);
    if (!t || t->numel() != 1 || t->dtype() != DataType::kFloat32) continue;
    const float v = t->data<float>()[0];
    if (v == 0.0f) continue;
    mm.SetFloat("tessera.scale", sc.op == "Div" ? 1.0f / v : v);
    mm.outputs = sc.outputs;
    sc.op.clear();
    ++count;
  }
  Sweep(g);
  (void)meta;
  return count;
}

int FuseResidualAdd(Graph* g, MetaMap* meta) {
  Uses u(*g);
  int count = 0;
  for (auto& conv : g->nodes) {
    if ((conv.op != "Conv" && conv.op != "MatMul") || conv.inputs.size() > 3 ||
        conv.Has("tessera.act"))
      continue;
    int pa = u.Single(conv.outputs[0]);
    if (pa < 0) continue;
    Node& add = g->nodes[pa];
    const std::string* r = Other(add, conv.outputs[0]);
    if (add.op != "Add" || !r || Const(*g, *r) || *r == conv.outputs[0]) continue;
    if ((*meta)[*r].shape != (*meta)[conv.outputs[0]].shape) continue;
    conv.inputs.resize(4);
    conv.inputs[3] = *r;
    conv.outputs = add.outputs;
    add.op.clear();
    ++count;
  }
  Sweep(g);
  return count;
}

int FuseMatMulBias(Graph* g, MetaMap* meta) {
  Uses u(*g);
  int count = 0;
  for (auto& mm : g->nodes) {
    if (mm.op != "MatMul" || mm.inputs.size() != 2 || mm.Has("tessera.act")) continue;
    const Shape& os = (*meta)[mm.outputs[0]].shape;
    if (os.size() < 2) continue;
    int pa = u.Single(mm.outputs[0]);
    if (pa < 0) continue;
    Node& add = g->nodes[pa];
    const std::string* b = Other(add, mm.outputs[0]);
    if (add.op != "Add" || !b) continue;
    const Tensor* bt = Const(*g, *b);
    if (!bt || bt->dtype() != DataType::kFloat32 || bt->numel() != os.back()) continue;
    if (bt->rank() > os.size()) continue;
    mm.inputs.push_back(*b);
    mm.outputs = add.outputs;
    add.op.clear();
    ++count;
  }
  Sweep(g);
  return count;
}

int FuseActivation(Graph* g, MetaMap* meta) {
  Uses u(*g);
  int count = 0;
  for (auto& p : g->nodes) {
    if ((p.op != "Conv" && p.op != "MatMul" && p.op != "Gemm") || p.Has("tessera.act")) continue;
    const std::string y = p.outputs[0];
    // SiLU / Swish: Mul(y, Sigmoid(y)) with y used by exactly those two nodes.
    auto uit = u.users.find(y);
    if (p.op == "Conv" && uit != u.users.end() && uit->second.size() == 2 &&
        !u.graph_outputs.count(y)) {
      Node* sig = nullptr;
      Node* mul = nullptr;
      for (size_t i : uit->second) {
        Node& c = g->nodes[i];
        if (c.op == "Sigmoid")
          sig = &c;
        else if (c.op == "Mul")
          mul = &c;
      }
      if (sig && mul && u.Single(sig->outputs[0]) >= 0 &&
          &g->nodes[u.Single(sig->outputs[0])] == mul && Other(*mul, y) &&
          *Other(*mul, y) == sig->outputs[0]) {
        p.SetString("tessera.act", "Swish");
        p.outputs = mul->outputs;
        sig->op.clear();
        mul->op.clear();
        ++count;
        continue;
      }
    }
    int pc = u.Single(y);
    if (pc < 0) continue;
    Node& act = g->nodes[pc];
    if (act.op == "Relu" || act.op == "Sigmoid" || act.op == "Tanh" || act.op == "HardSwish" ||
        act.op == "Gelu") {
      if (act.op == "Gelu" && act.GetString("approximate", "none") != "none") continue;
      // Gemm has no GELU epilogue on the CPU; a MatMul's is the packed GEMM's (the CPU plan
      // splits it off again where oneDNN runs the MatMul).
      if (act.op == "Gelu" && p.op == "Gemm") continue;
      p.SetString("tessera.act", act.op);
    } else if (act.op == "LeakyRelu") {
      p.SetString("tessera.act", act.op);
      p.SetFloat("tessera.alpha", act.GetFloat("alpha", 0.01f));
    } else if (act.op == "HardSigmoid") {
      p.SetString("tessera.act", act.op);
      p.SetFloat("tessera.alpha", act.GetFloat("alpha", 0.2f));
      p.SetFloat("tessera.beta", act.GetFloat("beta", 0.5f));
    } else if (act.op == "Clip") {
      float lo = act.GetFloat("min", -INFINITY), hi = act.GetFloat("max", INFINITY);
      bool ok = true;
      if (act.inputs.size() > 1 && !act.inputs[1].empty()) {
        const Tensor* t = Const(*g, act.inputs[1]);
        ok = ok && t && t->numel() == 1;
        if (t) lo = static_cast<float>(t->GetAsDouble(0));
      }
      if (act.inputs.size() > 2 && !act.inputs[2].empty()) {
        const Tensor* t = Const(*g, act.inputs[2]);
        ok = ok && t && t->numel() == 1;
        if (t) hi = static_cast<float>(t->GetAsDouble(0));
      }
      if (!ok) continue;
      p.SetString("tessera.act", "Clip");
      p.SetFloat("tessera.alpha", lo);
      p.SetFloat("tessera.beta", hi);
    } else {
      continue;
    }
    p.outputs = act.outputs;
    act.op.clear();
    ++count;
  }
  Sweep(g);
  (void)meta;
  return count;
}

Result<FusionReport> Optimize(Graph* g, MetaMap* meta, ConstantCache* cache) {
  FusionReport r;
  r.folded_bn = FoldBatchNormIntoConv(g, meta, cache);
  r.gelu = FuseGeluPattern(g, meta);
  r.bias = FuseMatMulBias(g, meta);
  r.scale = FuseMatMulScale(g, meta);
  r.residual = FuseResidualAdd(g, meta);
  r.activation = FuseActivation(g, meta);
  r.dead = EliminateDeadNodes(g);
  TESSERA_RETURN_IF_ERROR(TopologicalSort(g));
  return r;
}

}  // namespace tessera::passes
