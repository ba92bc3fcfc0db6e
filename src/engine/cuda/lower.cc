// Lowering of a prepared graph to the CUDA backend's Program (program.h). Everything here is
// host arithmetic: shapes, strides, GEMM and convolution parameters, and the arena plan.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "engine/cuda/math.h"
#include "engine/cuda/program.h"
#include "engine/ops/nn.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera::cuda {

int EwArity(Ew op) {
  if (op == Ew::kWhere || op == Ew::kMulAdd || op == Ew::kClamp) return 3;
  if (op >= Ew::kAdd) return 2;
  return 1;
}

const char* EwName(Ew op) {
  static const char* const kNames[] = {"Relu",        "LeakyRelu",   "Sigmoid",
                                       "Tanh",        "Erf",         "Gelu",
                                       "GeluTanh",    "Sqrt",        "Exp",
                                       "Log",         "Reciprocal",  "Floor",
                                       "Ceil",        "Softplus",    "HardSwish",
                                       "HardSigmoid", "Elu",         "Clip",
                                       "Swish",       "IsNaN",       "IsInf",
                                       "Neg",         "Abs",         "Cast",
                                       "Not",         "Add",         "Sub",
                                       "Mul",         "Div",         "Pow",
                                       "Min",         "Max",         "Mod",
                                       "Fmod",        "Equal",       "Less",
                                       "Greater",     "LessOrEqual", "GreaterOrEqual",
                                       "And",         "Or",          "Xor",
                                       "Where",       "MulAdd",      "Clamp"};
  return kNames[static_cast<int>(op)];
}

void MergeDims(std::vector<int64_t>* shape, const std::vector<std::vector<int64_t>*>& strides) {
  std::vector<int64_t> s;
  std::vector<std::vector<int64_t>> st(strides.size());
  for (size_t d = 0; d < shape->size(); ++d) {
    if ((*shape)[d] == 1) continue;
    bool merge = !s.empty();
    for (size_t k = 0; merge && k < strides.size(); ++k)
      merge = st[k].back() == (*strides[k])[d] * (*shape)[d];
    if (merge) {
      s.back() *= (*shape)[d];
      for (size_t k = 0; k < strides.size(); ++k) st[k].back() = (*strides[k])[d];
      continue;
    }
    s.push_back((*shape)[d]);
    for (size_t k = 0; k < strides.size(); ++k) st[k].push_back((*strides[k])[d]);
  }
  if (s.empty()) {
    s.push_back(1);
    for (auto& v : st) v.push_back(1);
  }
  *shape = s;
  for (size_t k = 0; k < strides.size(); ++k) *strides[k] = st[k];
}

namespace {

using ops::ValueMeta;

std::vector<int64_t> Contiguous(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// Strides of `in` (right-aligned) walked over `out`: 0 where it broadcasts.
std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  const auto c = Contiguous(in);
  const size_t shift = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i] != 1) st[i + shift] = c[i];
  return st;
}

bool IsFloatType(DataType t) { return t == DataType::kFloat32; }
bool IsLoweredType(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16 ||
         t == DataType::kInt64 || t == DataType::kInt32 || t == DataType::kBool ||
         t == DataType::kUInt8 || t == DataType::kInt8;
}

struct UnaryInfo {
  Ew op;
  bool float_only;
};
const std::unordered_map<std::string, UnaryInfo>& UnaryOps() {
  static const std::unordered_map<std::string, UnaryInfo> m = {
      {"Relu", {Ew::kRelu, true}},
      {"LeakyRelu", {Ew::kLeakyRelu, true}},
      {"Sigmoid", {Ew::kSigmoid, true}},
      {"Tanh", {Ew::kTanh, true}},
      {"Erf", {Ew::kErf, true}},
      {"Gelu", {Ew::kGelu, true}},
      {"Sqrt", {Ew::kSqrt, true}},
      {"Exp", {Ew::kExp, true}},
      {"Log", {Ew::kLog, true}},
      {"Reciprocal", {Ew::kReciprocal, true}},
      {"Floor", {Ew::kFloor, true}},
      {"Ceil", {Ew::kCeil, true}},
      {"Softplus", {Ew::kSoftplus, true}},
      {"HardSwish", {Ew::kHardSwish, true}},
      {"HardSigmoid", {Ew::kHardSigmoid, true}},
      {"Elu", {Ew::kElu, true}},
      {"Clip", {Ew::kClip, true}},
      {"Neg", {Ew::kNeg, false}},
      {"Abs", {Ew::kAbs, false}},
      {"Cast", {Ew::kCast, false}},
      {"Not", {Ew::kNot, false}},
      {"IsNaN", {Ew::kIsNaN, true}},
      {"IsInf", {Ew::kIsInf, true}}};
  return m;
}
const std::unordered_map<std::string, Ew>& BinaryOps() {
  static const std::unordered_map<std::string, Ew> m = {{"Add", Ew::kAdd},
                                                        {"Sub", Ew::kSub},
                                                        {"Mul", Ew::kMul},
                                                        {"Div", Ew::kDiv},
                                                        {"Pow", Ew::kPow},
                                                        {"Min", Ew::kMin},
                                                        {"Max", Ew::kMax},
                                                        {"Mod", Ew::kMod},
                                                        {"Equal", Ew::kEqual},
                                                        {"Less", Ew::kLess},
                                                        {"Greater", Ew::kGreater},
                                                        {"LessOrEqual", Ew::kLessOrEqual},
                                                        {"GreaterOrEqual", Ew::kGreaterOrEqual},
                                                        {"And", Ew::kAnd},
                                                        {"Or", Ew::kOr},
                                                        {"Xor", Ew::kXor}};
  return m;
}

Result<Act> ActOf(const Node& n, float* a, float* b) {
  const std::string act = n.GetString("tessera.act", "");
  *a = n.GetFloat("tessera.alpha", 0);
  *b = n.GetFloat("tessera.beta", 0);
  if (act.empty()) return Act::kNone;
  if (act == "Relu") return Act::kRelu;
  if (act == "LeakyRelu") return Act::kLeakyRelu;
  if (act == "Clip") return Act::kClip;
  if (act == "Sigmoid") return Act::kSigmoid;
  if (act == "Tanh") return Act::kTanh;
  if (act == "HardSigmoid") return Act::kHardSigmoid;
  if (act == "HardSwish") return Act::kHardSwish;
  if (act == "Swish") return Act::kSwish;
  if (act == "Gelu") return Act::kGelu;
  return Status::Unimplemented(n.Describe() + ": fused activation '" + act +
                               "' is not supported by the CUDA backend");
}

// Ops whose output is its input's bytes under another shape.
bool IsAliasOp(const std::string& op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
         op == "Identity" || op == "Dropout";
}

class Lowerer {
 public:
  Lowerer(PreparedGraph p, const LowerOptions& o) : p_(std::move(p)), opts_(o) {
    for (auto& [name, t] : p_.graph.initializers) p_.meta[name].constant = &t;
    for (const auto& in : p_.graph.inputs) graph_inputs_.insert(in.name);
    // A float value that a Cast turns into integers keeps FP32 storage: rounding it to FP16 /
    // BF16 first could change the integer.
    for (const auto& n : p_.graph.nodes)
      if (n.op == "Cast" && !n.outputs.empty() && p_.meta.count(n.outputs[0]) &&
          !IsFloatStorage(p_.meta.at(n.outputs[0]).dtype))
        keep_fp32_.insert(n.inputs[0]);
    // The residual stream keeps FP32: a LayerNormalization's input (the residual sum) and its
    // output (the next residual). These are the hidden-size values; the wide ones (attention
    // scores, the feed-forward's inner layer) stay narrow. With BF16's 8-bit mantissa, rounding
    // the stream at every layer is what pushes a BERT encoder past 1e-2 of FP32.
    // Graph outputs keep FP32 too, so the producing op writes what the client gets (no extra
    // rounding, no output cast); an alias chain (Reshape, Identity, ...) leads back to it.
    std::unordered_map<std::string, std::string> alias_of;
    for (const auto& n : p_.graph.nodes) {
      if (n.op == "LayerNormalization") {  // (and its per-row Mean / InvStdDev: one stat type)
        keep_fp32_.insert(n.inputs[0]);
        for (const std::string& v : n.outputs)
          if (!v.empty()) keep_fp32_.insert(v);
      }
      if (IsAliasOp(n.op) && !n.inputs.empty() && !n.outputs.empty())
        alias_of[n.outputs[0]] = n.inputs[0];
    }
    for (const auto& o : p_.graph.outputs)
      for (std::string v = o.name;; v = alias_of.at(v)) {
        keep_fp32_.insert(v);
        if (!alias_of.count(v)) break;
      }
  }

  Result<Program> Run() {
    DescribeIo(p_, &prog_.info);
    for (const auto& n : p_.graph.nodes) {
      Status st = LowerNode(n);
      if (!st.ok()) return st;
    }
    return Finish();
  }

 private:
  // ---- values ----
  const ValueMeta& Meta(const std::string& v) const { return p_.meta.at(v); }
  bool IsConst(const std::string& v) const { return p_.graph.initializers.count(v) != 0; }
  const Tensor& ConstOf(const std::string& v) const { return p_.graph.initializers.at(v); }

  int Id(const std::string& v) {
    auto [it, fresh] = ids_.try_emplace(v, static_cast<int>(values_.size()));
    if (fresh) {
      const auto& m = Meta(v);
      DataType t = m.dtype;
      if (t == DataType::kFloat32 && !graph_inputs_.count(v) && !keep_fp32_.count(v))
        t = opts_.activation_type;
      values_.push_back({v, NumElements(m.shape) * static_cast<int64_t>(DataTypeSize(t)),
                         static_cast<int>(values_.size()), t});
    }
    return it->second;
  }
  // How a value's elements are stored: a constant's own type; an arena value's (its root's, for
  // an alias) as Id chose it.
  DataType StoredType(const std::string& v) {
    if (IsConst(v)) return ConstOf(v).dtype();
    return values_[Root(Id(v))].type;
  }
  int Root(int id) const {
    while (values_[id].root != id) id = values_[id].root;
    return id;
  }
  int Scratch(int64_t bytes, DataType t = DataType::kUInt8) {
    const int id = static_cast<int>(values_.size());
    values_.push_back({"scratch:" + std::to_string(id), bytes, id, t});
    return id;
  }
  Ref ConstRef(const Tensor& t) {
    auto it = const_index_.find(t.raw());
    if (it == const_index_.end()) {
      it = const_index_.emplace(t.raw(), static_cast<int32_t>(prog_.constants.size())).first;
      prog_.constants.push_back(t);
    }
    Ref r;
    r.konst = it->second;
    r.offset = 0;
    return r;
  }
  Ref NewConst(Tensor t) {
    prog_.constants.push_back(std::move(t));
    Ref r;
    r.konst = static_cast<int32_t>(prog_.constants.size() - 1);
    r.offset = 0;
    return r;
  }
  Ref ArenaRef(int id, int64_t byte_offset = 0) {
    Ref r;
    r.value = id;
    r.offset = byte_offset;
    return r;
  }
  // An operand: its constant, or its arena value.
  Ref Of(const std::string& v, int64_t byte_offset = 0) {
    if (IsConst(v)) {
      Ref r = ConstRef(ConstOf(v));
      r.offset = byte_offset;
      return r;
    }
    return ArenaRef(Id(v), byte_offset);
  }

  void Emit(const Node& n, Instr instr) { prog_.steps.push_back({n.op, n.name, std::move(instr)}); }

  // ---- instruction builders ----
  Status EmitEw(const Node& n, Ew op, const std::vector<std::string>& ins, const std::string& out,
                float a = 0, float b = 0) {
    const auto& om = Meta(out);
    EwInstr e;
    e.op = op;
    e.arity = static_cast<int>(ins.size());
    e.out_type = StoredType(out);
    e.a = a;
    e.b = b;
    if (!IsLoweredType(om.dtype))
      return Status::Unimplemented(n.Describe() + ": the CUDA backend has no " +
                                   DataTypeName(om.dtype) + " element-wise kernels");
    std::vector<int64_t> shape = om.shape;
    std::vector<std::vector<int64_t>> st(ins.size());
    for (size_t k = 0; k < ins.size(); ++k) {
      const auto& im = Meta(ins[k]);
      if (!IsLoweredType(im.dtype))
        return Status::Unimplemented(n.Describe() + ": the CUDA backend has no " +
                                     DataTypeName(im.dtype) + " element-wise kernels");
      e.in_type[k] = StoredType(ins[k]);
      st[k] = BroadcastStrides(im.shape, om.shape);
      e.in[k] = Of(ins[k]);
    }
    if (ins.size() > 1 && op != Ew::kWhere && op != Ew::kMulAdd && op != Ew::kPow &&
        op != Ew::kClamp && Meta(ins[0]).dtype != Meta(ins[1]).dtype)
      return Status::InvalidArgument(n.Describe() + ": input types differ");
    // The output walks contiguously: it is one more operand for the merge.
    std::vector<int64_t> out_st = Contiguous(om.shape);
    std::vector<std::vector<int64_t>*> all{&out_st};
    for (auto& v : st) all.push_back(&v);
    MergeDims(&shape, all);
    if (shape.size() > static_cast<size_t>(kMaxRank))
      return Status::Unimplemented(n.Describe() + ": broadcast over more than " +
                                   std::to_string(kMaxRank) + " dims");
    e.rank = static_cast<int>(shape.size());
    for (int d = 0; d < e.rank; ++d) {
      e.shape[d] = shape[d];
      for (size_t k = 0; k < ins.size(); ++k) e.strides[k][d] = st[k][d];
    }
    e.count = NumElements(om.shape);
    e.out = Of(out);
    Emit(n, e);
    return Status::OK();
  }

  // A strided copy of `shape` elements: in / out strides in elements, refs already offset.
  Status EmitCopy(const Node& n, int elem, std::vector<int64_t> shape, std::vector<int64_t> in_st,
                  std::vector<int64_t> out_st, Ref in, Ref out) {
    CopyInstr c;
    c.elem = elem;
    c.count = NumElements(shape);
    if (c.count == 0) return Status::OK();
    MergeDims(&shape, {&in_st, &out_st});
    if (shape.size() > static_cast<size_t>(kMaxRank))
      return Status::Unimplemented(n.Describe() + ": a copy over more than " +
                                   std::to_string(kMaxRank) + " dims");
    c.rank = static_cast<int>(shape.size());
    for (int d = 0; d < c.rank; ++d) {
      c.shape[d] = shape[d];
      c.in_strides[d] = in_st[d];
      c.out_strides[d] = out_st[d];
    }
    c.in = in;
    c.out = out;
    Emit(n, c);
    return Status::OK();
  }

  void EmitFill(const Node& n, int elem, int64_t count, uint64_t bits, Ref out) {
    FillInstr f;
    f.elem = elem;
    f.count = count;
    f.bits = bits;
    f.out = out;
    Emit(n, f);
  }

  std::vector<const ValueMeta*> InputMetas(const Node& n) const {
    std::vector<const ValueMeta*> in;
    for (const auto& v : n.inputs) in.push_back(v.empty() ? nullptr : &Meta(v));
    return in;
  }
  // Ints from attribute `attr` (older opsets), else from constant input `index` (empty when the
  // node has neither); a run-time input is Unimplemented, as the op library says.
  Result<std::vector<int64_t>> AttrOrInputInts(const Node& n, const char* attr,
                                               size_t index) const {
    if (n.Has(attr)) return n.GetInts(attr);
    if (n.Input(index).empty()) return std::vector<int64_t>{};
    return ops::ConstInts(n, InputMetas(n), index);
  }

  // A float constant in storage type `t`: the same tensor when it already is, else a converted
  // copy (made once per graph constant; `cache` false for a tensor made during lowering).
  Ref ConstAs(const Tensor& src, DataType t, bool cache = true) {
    if (src.dtype() == t) return cache ? ConstRef(src) : NewConst(src);
    const auto key = std::make_pair(src.raw(), t);
    if (cache)
      if (auto it = const_as_.find(key); it != const_as_.end()) return it->second;
    Tensor dst = Tensor::Allocate(t, src.shape());
    for (int64_t i = 0; i < src.numel(); ++i)
      StoreF(dst.raw(), t, i, static_cast<float>(src.GetAsDouble(i)));
    const Ref r = NewConst(std::move(dst));
    if (cache) const_as_[key] = r;
    return r;
  }

  // Float value `v` read in storage type `want`, starting `elem_offset` elements in: itself when
  // it is stored so; else a constant converted once at compile time, or a run-time value cast
  // once into a scratch buffer by an element-wise step (shared by every later reader).
  Ref Use(const Node& n, const std::string& v, DataType want, int64_t elem_offset = 0) {
    const int64_t off = elem_offset * static_cast<int64_t>(DataTypeSize(want));
    const DataType have = StoredType(v);
    if (have == want) return Of(v, off);
    Ref r;
    if (IsConst(v)) {
      r = ConstAs(ConstOf(v), want);
    } else {
      const auto key = std::make_pair(Root(Id(v)), want);
      auto it = cast_.find(key);
      if (it != cast_.end()) {
        r = it->second;
      } else {
        const int64_t count = NumElements(Meta(v).shape);
        r = ArenaRef(Scratch(count * static_cast<int64_t>(DataTypeSize(want)), want));
        EmitCast(n, Of(v), have, r, want, count);
        cast_[key] = r;
      }
    }
    r.offset += off;
    return r;
  }
  void EmitCast(const Node& n, Ref in, DataType from, Ref out, DataType to, int64_t count) {
    EwInstr e;
    e.op = Ew::kCast;
    e.arity = 1;
    e.in_type[0] = from;
    e.out_type = to;
    e.rank = 1;
    e.shape[0] = count;
    e.strides[0][0] = 1;
    e.count = count;
    e.in[0] = in;
    e.out = out;
    Emit(n, e);
  }
  Ref Narrow(const Node& n, const std::string& v) { return Use(n, v, opts_.matmul_type); }
  int OperandBytes() const { return static_cast<int>(DataTypeSize(opts_.matmul_type)); }

  // ---- ops ----
  Status LowerNode(const Node& n) {
    const std::string& op = n.op;
    for (const auto& o : n.outputs)
      if (!o.empty() && !p_.meta.count(o))
        return Status::Internal(n.Describe() + ": output '" + o + "' has no inferred type");
    if (IsAliasOp(op)) return Alias(n);
    if (auto it = UnaryOps().find(op); it != UnaryOps().end()) return Unary(n, it->second);
    if (auto it = BinaryOps().find(op); it != BinaryOps().end()) {
      Ew e = it->second;
      if (op == "Mod" && n.GetInt("fmod", 0)) e = Ew::kFmod;
      return EmitEw(n, e, {n.inputs[0], n.inputs[1]}, n.outputs[0]);
    }
    if (op == "Where")
      return EmitEw(n, Ew::kWhere, {n.inputs[0], n.inputs[1], n.inputs[2]}, n.outputs[0]);
    if (op == "MatMul" || op == "Gemm") return Gemm(n);
    if (op == "Conv") return Conv(n);
    if (op == "MaxPool" || op == "AveragePool") return Pool(n);
    if (op == "GlobalAveragePool" || op == "GlobalMaxPool") return GlobalPool(n);
    if (op == "BatchNormalization") return BatchNorm(n);
    if (op == "Softmax" || op == "LogSoftmax") return Softmax(n);
    if (op == "LayerNormalization") return LayerNorm(n);
    if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax" || op == "ReduceMin")
      return Reduce(n);
    if (op == "Transpose") return Transpose(n);
    if (op == "Slice") return Slice(n);
    if (op == "Concat") return Concat(n);
    if (op == "Split") return Split(n);
    if (op == "Expand") return Expand(n);
    if (op == "Tile") return Tile(n);
    if (op == "Pad") return Pad(n);
    if (op == "Gather") return Gather(n);
    if (op == "Resize" || op == "Upsample") return Resize(n);
    return Status::Unimplemented(n.Describe() + ": op '" + op +
                                 "' is not implemented by the CUDA backend (with these inputs it "
                                 "is not folded at compile time either)");
  }

  Status Alias(const Node& n) {
    const std::string &x = n.inputs[0], &y = n.outputs[0];
    if (IsConst(x)) {  // a constant reshaped at run time: give it the output's name
      p_.graph.initializers[y] = ConstOf(x).Reshaped(Meta(y).shape);
      p_.meta[y].constant = &p_.graph.initializers[y];
      return Status::OK();
    }
    const int xi = Id(x), yi = Id(y);
    values_[yi].root = Root(xi);
    return Status::OK();
  }

  Status Unary(const Node& n, UnaryInfo u) {
    const auto& xm = Meta(n.inputs[0]);
    if (u.float_only && !IsFloatType(xm.dtype))
      return Status::Unimplemented(n.Describe() + ": the CUDA backend runs it on FP32 only, got " +
                                   DataTypeName(xm.dtype));
    float a = 0, b = 0;
    Ew op = u.op;
    if (n.op == "LeakyRelu") a = n.GetFloat("alpha", 0.01f);
    if (n.op == "Elu") a = n.GetFloat("alpha", 1.0f);
    if (n.op == "HardSigmoid") {
      a = n.GetFloat("alpha", 0.2f);
      b = n.GetFloat("beta", 0.5f);
    }
    if (n.op == "Gelu" && n.GetString("approximate", "none") == "tanh") op = Ew::kGeluTanh;
    if (n.op == "IsInf") {
      a = n.GetInt("detect_negative", 1) != 0 ? 1.0f : 0.0f;
      b = n.GetInt("detect_positive", 1) != 0 ? 1.0f : 0.0f;
    }
    if (n.op == "Clip") {
      a = n.GetFloat("min", -INFINITY);
      b = n.GetFloat("max", INFINITY);
      bool runtime_bound = false;
      for (size_t i = 1; i < 3; ++i) {
        if (i >= n.inputs.size() || n.inputs[i].empty()) continue;
        if (!IsConst(n.inputs[i])) {
          runtime_bound = true;
          continue;
        }
        (i == 1 ? a : b) = static_cast<float>(ConstOf(n.inputs[i]).GetAsDouble(0));
      }
      if (runtime_bound) {
        // Bounds computed at run time: a three-input clamp; a bound given as an attribute or a
        // constant (or absent: +-inf) becomes a scalar constant.
        std::vector<std::string> ins{n.inputs[0]};
        for (size_t i = 1; i < 3; ++i) {
          if (i < n.inputs.size() && !n.inputs[i].empty() && !IsConst(n.inputs[i])) {
            ins.push_back(n.inputs[i]);
            continue;
          }
          const std::string name = n.name + (i == 1 ? ".gpu_clip_lo" : ".gpu_clip_hi");
          Tensor t = Tensor::Allocate(DataType::kFloat32, {});
          t.data<float>()[0] = i == 1 ? a : b;
          p_.graph.initializers[name] = t;
          p_.meta[name] = {DataType::kFloat32, {}, &p_.graph.initializers[name]};
          ins.push_back(name);
        }
        return EmitEw(n, Ew::kClamp, ins, n.outputs[0]);
      }
    }
    return EmitEw(n, op, {n.inputs[0]}, n.outputs[0], a, b);
  }

  Status Gemm(const Node& n) {
    const bool is_gemm = n.op == "Gemm";
    const auto& am = Meta(n.inputs[0]);
    const auto& bm = Meta(n.inputs[1]);
    const auto& ym = Meta(n.outputs[0]);
    if (!IsFloatType(am.dtype) || !IsFloatType(bm.dtype))
      return Status::Unimplemented(n.Describe() + ": the CUDA backend multiplies FP32 only");
    GemmInstr g;
    float act_a = 0, act_b = 0;
    TESSERA_ASSIGN_OR_RETURN(g.act, ActOf(n, &act_a, &act_b));
    g.act_a = act_a;
    g.act_b = act_b;
    g.ab_type = opts_.matmul_type;
    g.cd_type = StoredType(n.outputs[0]);
    g.a = Narrow(n, n.inputs[0]);
    g.b = Narrow(n, n.inputs[1]);
    g.d = Of(n.outputs[0]);
    const int cd_bytes = static_cast<int>(DataTypeSize(g.cd_type));
    if (is_gemm) {
      if (am.shape.size() != 2 || bm.shape.size() != 2)
        return Status::InvalidArgument(n.Describe() + ": Gemm needs 2-D A and B");
      g.ta = n.GetInt("transA", 0) != 0;
      g.tb = n.GetInt("transB", 0) != 0;
      g.m = ym.shape[0];
      g.n = ym.shape[1];
      g.k = g.ta ? am.shape[0] : am.shape[1];
      g.lda = am.shape[1];
      g.ldb = bm.shape[1];
      g.ldc = g.n;
      g.alpha = n.GetFloat("alpha", 1.0f);
      const float beta = n.GetFloat("beta", 1.0f);
      const std::string cn = n.Input(2);
      if (!cn.empty() && beta != 0) {
        const auto& cm = Meta(cn);
        const bool row_bias = NumElements(cm.shape) == g.n &&
                              (cm.shape.size() == 1 || (cm.shape.size() == 2 && cm.shape[0] == 1));
        if (IsConst(cn) && row_bias && IsFloatType(cm.dtype)) {
          if (beta != 1.0f) {
            Tensor bias = ConstOf(cn).Reshaped({g.n}).Clone();
            for (int64_t i = 0; i < g.n; ++i) bias.data<float>()[i] *= beta;
            g.bias = ConstAs(bias, g.cd_type, /*cache=*/false);
          } else {
            g.bias = ConstAs(ConstOf(cn), g.cd_type);
          }
        } else {
          // C broadcast into D first, then accumulated with beta (D = alpha AB + beta D).
          TESSERA_RETURN_IF_ERROR(EmitCopy(n, cd_bytes, ym.shape,
                                           BroadcastStrides(cm.shape, ym.shape),
                                           Contiguous(ym.shape), Use(n, cn, g.cd_type), g.d));
          g.c = g.d;
          g.beta = beta;
        }
      }
      Emit(n, g);
      return Status::OK();
    }
    // MatMul (numpy semantics) with the fuse pass's extras: input 2 a bias over N, input 3 a
    // residual of the output's shape, tessera.scale on the product.
    Shape a = am.shape, b = bm.shape;
    if (a.size() == 1) a.insert(a.begin(), 1);
    if (b.size() == 1) b.push_back(1);
    const int64_t m = a[a.size() - 2], k = a.back(), nn = b.back();
    if (b[b.size() - 2] != k)
      return Status::InvalidArgument(n.Describe() + ": inner dims differ: " +
                                     ShapeToString(am.shape) + " x " + ShapeToString(bm.shape));
    g.m = m;
    g.n = nn;
    g.k = k;
    g.lda = k;
    g.ldb = nn;
    g.ldc = nn;
    g.alpha = n.GetFloat("tessera.scale", 1.0f);
    const Shape abatch(a.begin(), a.end() - 2), bbatch(b.begin(), b.end() - 2);
    TESSERA_ASSIGN_OR_RETURN(Shape obatch, ops::BroadcastShapes(abatch, bbatch));
    const int64_t na = NumElements(abatch), nb = NumElements(bbatch), no = NumElements(obatch);
    if (nb == 1) {  // weights shared by every row: one tall product
      g.m = m * na;
      g.batch = 1;
    } else if (na == no && nb == no && abatch.size() == bbatch.size()) {
      g.batch = no;
      g.sa = m * k;
      g.sb = k * nn;
      g.sc = m * nn;
    } else {
      // A batch dim broadcast on one side: expand both operands to the output's batch first
      // (every batch entry then has its own matrix; no zero batch strides reach cuBLASLt).
      auto expand = [&](const Shape& sh, int64_t rows, int64_t cols, Ref* ref) -> Status {
        Shape full = obatch;
        full.push_back(rows);
        full.push_back(cols);
        Shape src(sh.begin(), sh.end() - 2);
        src.push_back(rows);
        src.push_back(cols);
        const int id = Scratch(NumElements(full) * OperandBytes());
        const Ref from = *ref;
        *ref = ArenaRef(id);
        return EmitCopy(n, OperandBytes(), full, BroadcastStrides(src, full), Contiguous(full),
                        from, *ref);
      };
      TESSERA_RETURN_IF_ERROR(expand(a, m, k, &g.a));
      TESSERA_RETURN_IF_ERROR(expand(b, k, nn, &g.b));
      g.batch = no;
      g.sa = m * k;
      g.sb = k * nn;
      g.sc = m * nn;
    }
    const std::string bias = n.Input(2), res = n.Input(3);
    if (!bias.empty()) {
      if (!IsConst(bias) || NumElements(Meta(bias).shape) != nn)
        return Status::Unimplemented(n.Describe() + ": a fused bias must be a constant of " +
                                     std::to_string(nn) + " values");
      g.bias = ConstAs(ConstOf(bias), g.cd_type);
    }
    if (!res.empty()) {
      if (Meta(res).shape != ym.shape)
        return Status::Unimplemented(n.Describe() +
                                     ": a fused residual must have the output's "
                                     "shape");
      g.c = Use(n, res, g.cd_type);
      g.beta = 1.0f;
    }
    Emit(n, g);
    return Status::OK();
  }

  Status Conv(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    const auto& wm = Meta(n.inputs[1]);
    if (!IsFloatType(xm.dtype) || !IsFloatType(wm.dtype))
      return Status::Unimplemented(n.Describe() + ": the CUDA backend convolves FP32 only");
    if (xm.shape.size() != 3 && xm.shape.size() != 4)
      return Status::Unimplemented(n.Describe() +
                                   ": only 1-D and 2-D convolutions run on the "
                                   "CUDA backend, got input " +
                                   ShapeToString(xm.shape));
    TESSERA_ASSIGN_OR_RETURN(auto g, ops::ComputeWindow(n, xm.shape, wm.shape));
    const bool one_d = xm.shape.size() == 3;
    auto dim = [&](const std::vector<int64_t>& v, int i, int64_t dflt) {
      return one_d ? (i == 0 ? dflt : v[0]) : v[i];
    };
    ConvInstr c;
    c.n = xm.shape[0];
    c.c = xm.shape[1];
    c.h = one_d ? 1 : xm.shape[2];
    c.w = xm.shape.back();
    c.k = wm.shape[0];
    c.r = one_d ? 1 : wm.shape[2];
    c.s = wm.shape.back();
    c.groups = n.GetInt("group", 1);
    if (c.groups <= 0 || c.c % c.groups || c.k % c.groups || wm.shape[1] * c.groups != c.c)
      return Status::InvalidArgument(n.Describe() + ": channels do not match groups");
    c.oh = one_d ? 1 : g.out[2];
    c.ow = g.out.back();
    c.stride_h = dim(g.strides, 0, 1);
    c.stride_w = dim(g.strides, 1, 1);
    c.dil_h = dim(g.dilations, 0, 1);
    c.dil_w = dim(g.dilations, 1, 1);
    const int64_t pt = dim(g.pad_begin, 0, 0), pl = dim(g.pad_begin, 1, 0);
    const int64_t pb = dim(g.pad_end, 0, 0), pr = dim(g.pad_end, 1, 0);
    float act_a = 0, act_b = 0;
    TESSERA_ASSIGN_OR_RETURN(c.act, ActOf(n, &act_a, &act_b));
    c.act_a = act_a;
    c.act_b = act_b;
    c.xw_type = opts_.matmul_type;
    c.y_type = StoredType(n.outputs[0]);
    c.weight = Narrow(n, n.inputs[1]);
    if (!n.Input(2).empty()) c.bias = Use(n, n.Input(2), DataType::kFloat32);
    if (!n.Input(3).empty()) c.residual = Use(n, n.Input(3), c.y_type);
    c.y = Of(n.outputs[0]);
    const Ref x = Narrow(n, n.inputs[0]);
    const int es = OperandBytes();
    if (c.xw_type != c.y_type) c.tmp = ArenaRef(Scratch(c.n * c.k * c.oh * c.ow * es));
    // The library convolutions take one pad per side pair; pad explicitly when they differ
    // (SAME_UPPER with an even kernel, for instance).
    const int64_t eh = (c.r - 1) * c.dil_h + 1, ew = (c.s - 1) * c.dil_w + 1;
    const bool exact_h = (c.h + 2 * pt - eh) / c.stride_h + 1 == c.oh;
    const bool exact_w = (c.w + 2 * pl - ew) / c.stride_w + 1 == c.ow;
    if ((pt == pb || exact_h) && (pl == pr || exact_w)) {
      c.pad_h = pt;
      c.pad_w = pl;
      c.x = x;
    } else {
      const int64_t ph = c.h + pt + pb, pw = c.w + pl + pr;
      const Shape padded{c.n, c.c, ph, pw};
      const int id = Scratch(NumElements(padded) * es);
      EmitFill(n, es, NumElements(padded), 0, ArenaRef(id));
      const auto pst = Contiguous(padded);
      TESSERA_RETURN_IF_ERROR(EmitCopy(n, es, {c.n, c.c, c.h, c.w},
                                       Contiguous({c.n, c.c, c.h, c.w}), pst, x,
                                       ArenaRef(id, (pt * pst[2] + pl) * es)));
      c.h = ph;
      c.w = pw;
      c.pad_h = c.pad_w = 0;
      c.x = ArenaRef(id);
    }
    Emit(n, c);
    return Status::OK();
  }

  Status Pool(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype) || (xm.shape.size() != 3 && xm.shape.size() != 4))
      return Status::Unimplemented(n.Describe() + ": the CUDA backend pools 1-D / 2-D FP32 only");
    if (n.outputs.size() > 1 && !n.outputs[1].empty())
      return Status::Unimplemented(n.Describe() + ": MaxPool's Indices output");
    TESSERA_ASSIGN_OR_RETURN(auto g, ops::ComputeWindow(n, xm.shape, {}));
    const bool one_d = xm.shape.size() == 3;
    auto dim = [&](const std::vector<int64_t>& v, int i, int64_t dflt) {
      return one_d ? (i == 0 ? dflt : v[0]) : v[i];
    };
    PoolInstr p;
    p.max = n.op == "MaxPool";
    p.count_include_pad = n.GetInt("count_include_pad", 0) != 0;
    p.planes = xm.shape[0] * xm.shape[1];
    p.h = one_d ? 1 : xm.shape[2];
    p.w = xm.shape.back();
    p.oh = one_d ? 1 : g.out[2];
    p.ow = g.out.back();
    p.kh = dim(g.kernel, 0, 1);
    p.kw = dim(g.kernel, 1, 1);
    p.stride_h = dim(g.strides, 0, 1);
    p.stride_w = dim(g.strides, 1, 1);
    p.dil_h = dim(g.dilations, 0, 1);
    p.dil_w = dim(g.dilations, 1, 1);
    p.pad_t = dim(g.pad_begin, 0, 0);
    p.pad_l = dim(g.pad_begin, 1, 0);
    // ONNX counts pads as written, not the end pad that ceil mode grows (ComputeWindow's).
    const auto pads = n.GetInts("pads", std::vector<int64_t>(2 * g.kernel.size(), 0));
    const bool explicit_pads = n.GetString("auto_pad", "NOTSET") == "NOTSET";
    p.pad_b = one_d ? 0 : (explicit_pads ? pads[2] : g.pad_end[0]);
    p.pad_r = explicit_pads ? pads.back() : g.pad_end.back();
    p.type = StoredType(n.outputs[0]);
    p.x = Use(n, n.inputs[0], p.type);
    p.y = Of(n.outputs[0]);
    Emit(n, p);
    return Status::OK();
  }

  Status GlobalPool(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype) || xm.shape.size() < 3)
      return Status::Unimplemented(n.Describe() + ": FP32 N x C x spatial input expected");
    ReduceInstr r;
    r.kind = n.op == "GlobalMaxPool" ? ReduceInstr::Kind::kMax : ReduceInstr::Kind::kMean;
    r.outer = xm.shape[0] * xm.shape[1];
    r.len = NumElements(xm.shape) / std::max<int64_t>(r.outer, 1);
    r.inner = 1;
    r.type = StoredType(n.outputs[0]);
    r.in = Use(n, n.inputs[0], r.type);
    r.out = Of(n.outputs[0]);
    Emit(n, r);
    return Status::OK();
  }

  Status BatchNorm(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype) || xm.shape.size() < 2)
      return Status::Unimplemented(n.Describe() + ": FP32 N x C x ... input expected");
    for (size_t i = 1; i < 5; ++i)
      if (!IsConst(n.Input(i)))
        return Status::Unimplemented(n.Describe() + ": statistics must be constants");
    const int64_t c = xm.shape[1];
    const float eps = n.GetFloat("epsilon", 1e-5f);
    Shape cs{c};
    for (size_t i = 2; i < xm.shape.size(); ++i) cs.push_back(1);
    Tensor scale = Tensor::Allocate(DataType::kFloat32, cs);
    Tensor shift = Tensor::Allocate(DataType::kFloat32, cs);
    const Tensor &g = ConstOf(n.Input(1)), &b = ConstOf(n.Input(2)), &mu = ConstOf(n.Input(3)),
                 &var = ConstOf(n.Input(4));
    for (int64_t i = 0; i < c; ++i) {
      const float s =
          static_cast<float>(g.GetAsDouble(i) / std::sqrt(var.GetAsDouble(i) + double{eps}));
      scale.data<float>()[i] = s;
      shift.data<float>()[i] = static_cast<float>(b.GetAsDouble(i) - mu.GetAsDouble(i) * s);
    }
    const std::string sn = n.name + ".gpu_bn_scale", tn = n.name + ".gpu_bn_shift";
    for (auto [name, t] : {std::pair{sn, scale}, std::pair{tn, shift}}) {
      p_.graph.initializers[name] = t;
      p_.meta[name] = {DataType::kFloat32, cs, &p_.graph.initializers[name]};
    }
    return EmitEw(n, Ew::kMulAdd, {n.inputs[0], sn, tn}, n.outputs[0]);
  }

  Status Softmax(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype)) return Status::Unimplemented(n.Describe() + ": FP32 only");
    const auto& s = xm.shape;
    const int64_t r = static_cast<int64_t>(s.size());
    const int64_t axis = ops::NormalizeAxis(n.GetInt("axis", -1), r);
    SoftmaxInstr sm;
    sm.log = n.op == "LogSoftmax";
    sm.outer = 1;
    for (int64_t i = 0; i < axis; ++i) sm.outer *= s[i];
    if (n.GetInt("tessera.opset", 13) < 13) {  // coerced to 2-D at `axis`
      sm.len = NumElements(s) / std::max<int64_t>(sm.outer, 1);
      sm.inner = 1;
    } else {
      sm.len = s[axis];
      sm.inner = NumElements(s) / std::max<int64_t>(sm.outer * sm.len, 1);
    }
    sm.type = StoredType(n.outputs[0]);
    sm.in = Use(n, n.inputs[0], sm.type);
    sm.out = Of(n.outputs[0]);
    Emit(n, sm);
    return Status::OK();
  }

  Status LayerNorm(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype)) return Status::Unimplemented(n.Describe() + ": FP32 only");
    const int64_t r = static_cast<int64_t>(xm.shape.size());
    const int64_t axis = ops::NormalizeAxis(n.GetInt("axis", -1), r);
    LayerNormInstr l;
    l.cols = 1;
    for (int64_t i = axis; i < r; ++i) l.cols *= xm.shape[i];
    l.rows = NumElements(xm.shape) / std::max<int64_t>(l.cols, 1);
    l.eps = n.GetFloat("epsilon", 1e-5f);
    l.type = StoredType(n.outputs[0]);
    l.in = Use(n, n.inputs[0], l.type);
    l.scale = Use(n, n.inputs[1], DataType::kFloat32);
    if (!n.Input(2).empty()) l.bias = Use(n, n.Input(2), DataType::kFloat32);
    l.out = Of(n.outputs[0]);
    bool stats = false;
    for (size_t i = 1; i < 3 && i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      const DataType t = StoredType(n.outputs[i]);
      if (stats && t != l.stat_type)  // both keep their declared (stash) type
        return Status::Internal(n.Describe() +
                                ": Mean and InvStdDev outputs stored in different types");
      l.stat_type = t;
      stats = true;
      (i == 1 ? l.mean : l.inv_std) = Of(n.outputs[i]);
    }
    Emit(n, l);
    return Status::OK();
  }

  Status Reduce(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    if (!IsFloatType(xm.dtype)) return Status::Unimplemented(n.Describe() + ": FP32 only");
    const int64_t r = static_cast<int64_t>(xm.shape.size());
    TESSERA_ASSIGN_OR_RETURN(std::vector<int64_t> axes, AttrOrInputInts(n, "axes", 1));
    if (axes.empty() && !n.GetInt("noop_with_empty_axes", 0))
      for (int64_t i = 0; i < r; ++i) axes.push_back(i);
    for (auto& a : axes) a = ops::NormalizeAxis(a, r);
    std::sort(axes.begin(), axes.end());
    axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
    // Reduced dims of extent 1 change nothing; the rest must be adjacent.
    std::vector<int64_t> real;
    for (auto a : axes)
      if (xm.shape[a] != 1) real.push_back(a);
    ReduceInstr ri;
    ri.kind = n.op == "ReduceMean"  ? ReduceInstr::Kind::kMean
              : n.op == "ReduceSum" ? ReduceInstr::Kind::kSum
              : n.op == "ReduceMax" ? ReduceInstr::Kind::kMax
                                    : ReduceInstr::Kind::kMin;
    ri.type = StoredType(n.outputs[0]);
    ri.in = Use(n, n.inputs[0], ri.type);
    ri.out = Of(n.outputs[0]);
    const int es = static_cast<int>(DataTypeSize(ri.type));
    if (real.empty()) {  // nothing reduced: a copy (the reduction of one element)
      ri.outer = NumElements(xm.shape);
      Emit(n, ri);
      return Status::OK();
    }
    bool adjacent = true;
    for (size_t i = 1; i < real.size(); ++i)
      for (int64_t d = real[i - 1] + 1; d < real[i]; ++d)
        if (xm.shape[d] != 1) adjacent = false;
    if (!adjacent) {
      // Kept axes first, reduced axes last (a strided copy), then one reduction over the tail.
      std::vector<int64_t> order;
      for (int64_t d = 0; d < r; ++d)
        if (!std::binary_search(real.begin(), real.end(), d)) order.push_back(d);
      order.insert(order.end(), real.begin(), real.end());
      const auto xs = Contiguous(xm.shape);
      Shape moved;
      std::vector<int64_t> in_st;
      for (int64_t d : order) {
        moved.push_back(xm.shape[d]);
        in_st.push_back(xs[d]);
      }
      const int id = Scratch(NumElements(xm.shape) * es, ri.type);
      TESSERA_RETURN_IF_ERROR(
          EmitCopy(n, es, moved, in_st, Contiguous(moved), ri.in, ArenaRef(id)));
      ri.in = ArenaRef(id);
      ri.len = 1;
      for (int64_t d : real) ri.len *= xm.shape[d];
      ri.outer = NumElements(xm.shape) / std::max<int64_t>(ri.len, 1);
      ri.inner = 1;
      Emit(n, ri);
      return Status::OK();
    }
    ri.outer = ri.len = ri.inner = 1;
    for (int64_t d = 0; d < real.front(); ++d) ri.outer *= xm.shape[d];
    for (int64_t d = real.front(); d <= real.back(); ++d) ri.len *= xm.shape[d];
    for (int64_t d = real.back() + 1; d < r; ++d) ri.inner *= xm.shape[d];
    Emit(n, ri);
    return Status::OK();
  }

  Status Transpose(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    const size_t r = xm.shape.size();
    std::vector<int64_t> perm = n.GetInts("perm");
    if (perm.empty())
      for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
    const auto xs = Contiguous(xm.shape);
    const Shape& ys = Meta(n.outputs[0]).shape;
    std::vector<int64_t> in_st(r);
    for (size_t i = 0; i < r; ++i) in_st[i] = xs[perm[i]];
    const DataType t = StoredType(n.outputs[0]);
    return EmitCopy(n, static_cast<int>(DataTypeSize(t)), ys, in_st, Contiguous(ys),
                    Use(n, n.inputs[0], t), Of(n.outputs[0]));
  }

  Status Slice(const Node& n) {
    const auto in = InputMetas(n);
    TESSERA_ASSIGN_OR_RETURN(auto sp, ops::ComputeSlice(n, in));
    const auto& xm = Meta(n.inputs[0]);
    const auto xs = Contiguous(xm.shape);
    const DataType t = StoredType(n.outputs[0]);
    const int64_t es = static_cast<int64_t>(DataTypeSize(t));
    int64_t base = 0;
    std::vector<int64_t> in_st(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
      base += sp.start[i] * xs[i];
      in_st[i] = xs[i] * sp.step[i];
    }
    return EmitCopy(n, static_cast<int>(es), sp.out, in_st, Contiguous(sp.out),
                    Use(n, n.inputs[0], t, base), Of(n.outputs[0]));
  }

  Status Concat(const Node& n) {
    const auto& ym = Meta(n.outputs[0]);
    const int64_t r = static_cast<int64_t>(ym.shape.size());
    const int64_t axis = ops::NormalizeAxis(n.GetInt("axis", 0), r);
    const auto ys = Contiguous(ym.shape);
    const DataType t = StoredType(n.outputs[0]);
    const int64_t es = static_cast<int64_t>(DataTypeSize(t));
    int64_t at = 0;
    for (const auto& v : n.inputs) {
      const Shape& s = Meta(v).shape;
      TESSERA_RETURN_IF_ERROR(EmitCopy(n, static_cast<int>(es), s, Contiguous(s), ys, Use(n, v, t),
                                       Of(n.outputs[0], at * ys[axis] * es)));
      at += s[axis];
    }
    return Status::OK();
  }

  Status Split(const Node& n) {
    const auto in = InputMetas(n);
    TESSERA_ASSIGN_OR_RETURN(auto sizes, ops::SplitSizes(n, in, n.outputs.size()));
    const auto& xm = Meta(n.inputs[0]);
    const int64_t r = static_cast<int64_t>(xm.shape.size());
    const int64_t axis = ops::NormalizeAxis(n.GetInt("axis", 0), r);
    const auto xs = Contiguous(xm.shape);
    int64_t at = 0;
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (!n.outputs[i].empty()) {
        const Shape& s = Meta(n.outputs[i]).shape;
        const DataType t = StoredType(n.outputs[i]);
        TESSERA_RETURN_IF_ERROR(EmitCopy(n, static_cast<int>(DataTypeSize(t)), s, xs, Contiguous(s),
                                         Use(n, n.inputs[0], t, at * xs[axis]), Of(n.outputs[i])));
      }
      at += sizes[i];
    }
    return Status::OK();
  }

  Status Expand(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    const Shape& ys = Meta(n.outputs[0]).shape;
    const DataType t = StoredType(n.outputs[0]);
    return EmitCopy(n, static_cast<int>(DataTypeSize(t)), ys, BroadcastStrides(xm.shape, ys),
                    Contiguous(ys), Use(n, n.inputs[0], t), Of(n.outputs[0]));
  }

  Status Tile(const Node& n) {
    const auto& xm = Meta(n.inputs[0]);
    const Shape& ys = Meta(n.outputs[0]).shape;
    const size_t r = xm.shape.size();
    const auto xs = Contiguous(xm.shape), os = Contiguous(ys);
    // out viewed as (repeat_i, dim_i) pairs: the repeat walks the input with stride 0.
    std::vector<int64_t> shape, in_st, out_st;
    for (size_t i = 0; i < r; ++i) {
      const int64_t reps = xm.shape[i] ? ys[i] / xm.shape[i] : 0;
      shape.insert(shape.end(), {reps, xm.shape[i]});
      in_st.insert(in_st.end(), {0, xs[i]});
      out_st.insert(out_st.end(), {xm.shape[i] * os[i], os[i]});
    }
    const DataType t = StoredType(n.outputs[0]);
    return EmitCopy(n, static_cast<int>(DataTypeSize(t)), shape, in_st, out_st,
                    Use(n, n.inputs[0], t), Of(n.outputs[0]));
  }

  Status Pad(const Node& n) {
    const std::string mode = n.GetString("mode", "constant");
    if (mode != "constant" && mode != "reflect" && mode != "edge")
      return Status::Unimplemented(n.Describe() + ": Pad mode '" + mode +
                                   "' (constant, reflect and edge are supported)");
    const auto& xm = Meta(n.inputs[0]);
    const Shape& ys = Meta(n.outputs[0]).shape;
    const DataType t = StoredType(n.outputs[0]);
    TESSERA_ASSIGN_OR_RETURN(std::vector<int64_t> pads, AttrOrInputInts(n, "pads", 1));
    if (pads.size() != 2 * xm.shape.size())
      return Status::InvalidArgument(n.Describe() + ": pads must have 2 x rank entries");
    if (mode != "constant") {
      const size_t r = xm.shape.size();
      if (r > static_cast<size_t>(kMaxRank))
        return Status::Unimplemented(n.Describe() + ": Pad over more than 8 dims");
      PadInstr pi;
      pi.reflect = mode == "reflect";
      pi.elem = static_cast<int>(DataTypeSize(t));
      pi.rank = static_cast<int>(r);
      const auto xs = Contiguous(xm.shape);
      for (size_t d = 0; d < r; ++d) {
        if (xm.shape[d] == 0)
          return Status::InvalidArgument(n.Describe() + ": cannot " + mode + "-pad an empty dim");
        pi.out_shape[d] = ys[d];
        pi.in_shape[d] = xm.shape[d];
        pi.in_strides[d] = xs[d];
        pi.pad_begin[d] = pads[d];
      }
      pi.count = NumElements(ys);
      pi.in = Use(n, n.inputs[0], t);
      pi.out = Of(n.outputs[0]);
      Emit(n, pi);
      return Status::OK();
    }
    const size_t r = xm.shape.size(), es = DataTypeSize(t);
    uint64_t bits = 0;
    if (!n.Input(2).empty()) {
      if (!IsConst(n.Input(2)))
        return Status::Unimplemented(n.Describe() + ": the pad value must be a constant");
      const Tensor& v = ConstOf(n.Input(2));
      if (v.numel()) {
        if (v.dtype() != t) {  // a float pad value for narrow storage
          StoreF(&bits, t, 0, static_cast<float>(v.GetAsDouble(0)));
        } else {
          std::memcpy(&bits, v.raw(), std::min(es, sizeof(bits)));
        }
      }
    } else if (n.Has("value") && xm.dtype == DataType::kFloat32) {
      StoreF(&bits, t, 0, n.GetFloat("value", 0));
    }
    EmitFill(n, static_cast<int>(es), NumElements(ys), bits, Of(n.outputs[0]));
    const auto xs = Contiguous(xm.shape), os = Contiguous(ys);
    Shape copy(r);
    int64_t in_off = 0, out_off = 0;
    for (size_t i = 0; i < r; ++i) {
      const int64_t b = pads[i], e = pads[i + r];
      const int64_t crop_b = std::max<int64_t>(-b, 0), crop_e = std::max<int64_t>(-e, 0);
      copy[i] = std::max<int64_t>(0, xm.shape[i] - crop_b - crop_e);
      in_off += crop_b * xs[i];
      out_off += std::max<int64_t>(b, 0) * os[i];
    }
    const int64_t esz = static_cast<int64_t>(es);
    return EmitCopy(n, static_cast<int>(es), copy, xs, os, Use(n, n.inputs[0], t, in_off),
                    Of(n.outputs[0], out_off * esz));
  }

  Status Resize(const Node& n) {
    const auto in = InputMetas(n);
    TESSERA_ASSIGN_OR_RETURN(auto t, ops::ComputeResize(n, in));
    const auto& xm = Meta(n.inputs[0]);
    const size_t r = xm.shape.size();
    if (r > static_cast<size_t>(kMaxRank) || t.lin.size() > 4)
      return Status::Unimplemented(n.Describe() + ": Resize over more than " +
                                   std::to_string(kMaxRank) + " dims or 4 interpolating axes");
    ResizeInstr ri;
    ri.rank = static_cast<int>(r);
    const auto xs = Contiguous(xm.shape);
    int64_t total = 0;
    for (size_t a = 0; a < r; ++a) total += t.plan.out[a];
    Tensor i0 = Tensor::Allocate(DataType::kInt64, {total});
    Tensor i1 = Tensor::Allocate(DataType::kInt64, {total});
    Tensor w = Tensor::Allocate(DataType::kFloat32, {total});
    int64_t at = 0;
    for (size_t a = 0; a < r; ++a) {
      ri.out_shape[a] = t.plan.out[a];
      ri.in_strides[a] = xs[a];
      ri.table_offset[a] = at;
      for (int64_t o = 0; o < t.plan.out[a]; ++o, ++at) {
        i0.data<int64_t>()[at] = t.i0[a][o];
        i1.data<int64_t>()[at] = t.i1[a][o];
        w.data<float>()[at] = t.w1[a][o];
      }
    }
    for (size_t a : t.lin) ri.lin_mask |= 1u << a;
    ri.count = NumElements(t.plan.out);
    ri.type = StoredType(n.outputs[0]);
    ri.x = Use(n, n.inputs[0], ri.type);
    ri.y = Of(n.outputs[0]);
    ri.i0 = NewConst(i0);
    ri.i1 = NewConst(i1);
    ri.w = NewConst(w);
    Emit(n, ri);
    return Status::OK();
  }

  Status Gather(const Node& n) {
    const auto& dm = Meta(n.inputs[0]);
    const auto& im = Meta(n.inputs[1]);
    if (im.dtype != DataType::kInt64 && im.dtype != DataType::kInt32)
      return Status::InvalidArgument(n.Describe() + ": indices must be INT64 or INT32, got " +
                                     DataTypeName(im.dtype));
    const int64_t r = static_cast<int64_t>(dm.shape.size());
    const int64_t axis = ops::NormalizeAxis(n.GetInt("axis", 0), r);
    GatherInstr g;
    const DataType t = StoredType(n.outputs[0]);
    g.elem = static_cast<int>(DataTypeSize(t));
    g.index_type = im.dtype;
    g.outer = 1;
    for (int64_t i = 0; i < axis; ++i) g.outer *= dm.shape[i];
    g.axis_dim = dm.shape[axis];
    g.inner = NumElements(dm.shape) / std::max<int64_t>(g.outer * g.axis_dim, 1);
    g.count = NumElements(im.shape);
    g.data = Use(n, n.inputs[0], t);
    g.index = Of(n.inputs[1]);
    g.out = Of(n.outputs[0]);
    Emit(n, g);
    return Status::OK();
  }

  // ---- arena plan ----
  Result<Program> Finish() {
    // Outputs keep their declared type (the constructor put them in keep_fp32_).
    for (const auto& o : p_.graph.outputs)
      if (!IsConst(o.name) && StoredType(o.name) != Meta(o.name).dtype)
        return Status::Internal("CUDA lowering: output '" + o.name + "' is stored as " +
                                DataTypeName(StoredType(o.name)) + ", not its declared " +
                                DataTypeName(Meta(o.name).dtype));
    const int n_steps = static_cast<int>(prog_.steps.size());
    // Every graph input and output has a value, even one no step touches (an unused input, an
    // output that is an input); outputs the compiler computed are constants.
    for (const auto& in : p_.graph.inputs) Id(in.name);
    for (const auto& o : p_.graph.outputs)
      if (!IsConst(o.name)) Id(o.name);
    std::vector<int> first(values_.size(), n_steps + 1), last(values_.size(), -2);
    auto touch = [&](int id, int t) {
      const int r = Root(id);
      first[r] = std::min(first[r], t);
      last[r] = std::max(last[r], t);
    };
    for (const auto& in : p_.graph.inputs) touch(Id(in.name), -1);
    for (int i = 0; i < n_steps; ++i)
      ForEachRef(prog_.steps[i].instr, [&](Ref& r) {
        if (r.value >= 0) touch(r.value, i);
      });
    for (const auto& o : p_.graph.outputs)
      if (!IsConst(o.name)) touch(Id(o.name), n_steps);
    std::vector<passes::BufferRequest> reqs;
    for (size_t id = 0; id < values_.size(); ++id)
      if (Root(static_cast<int>(id)) == static_cast<int>(id) && last[id] >= -1)
        reqs.push_back(
            {values_[id].name, static_cast<size_t>(values_[id].bytes), first[id], last[id]});
    passes::MemoryPlan plan = passes::PlanMemory(reqs, 256);
    // The error word sits first; the planned values follow it.
    constexpr int64_t kHeader = 256;
    prog_.error_offset = 0;
    prog_.arena_bytes = plan.arena_bytes + kHeader;
    prog_.naive_bytes = plan.naive_bytes;
    std::unordered_map<std::string, int64_t> base;
    for (const auto& [name, off] : plan.offsets) base[name] = static_cast<int64_t>(off) + kHeader;
    auto resolve = [&](Ref& r) -> Status {
      if (r.value < 0) return Status::OK();
      auto it = base.find(values_[Root(r.value)].name);
      if (it == base.end())
        return Status::Internal("CUDA lowering: value '" + values_[r.value].name +
                                "' has no place in the arena");
      r.offset += it->second;
      return Status::OK();
    };
    for (auto& s : prog_.steps) {
      Status st;
      ForEachRef(s.instr, [&](Ref& r) {
        if (st.ok()) st = resolve(r);
      });
      TESSERA_RETURN_IF_ERROR(st);
    }
    for (const auto& in : prog_.info.inputs) {
      IoSlot slot{in, ArenaRef(Id(in.name)), NumElements(in.shape) * DataTypeSize(in.dtype)};
      TESSERA_RETURN_IF_ERROR(resolve(slot.ref));
      prog_.inputs.push_back(slot);
    }
    for (const auto& out : prog_.info.outputs) {
      IoSlot slot{out, IsConst(out.name) ? Of(out.name) : ArenaRef(Id(out.name)),
                  NumElements(out.shape) * DataTypeSize(out.dtype)};
      TESSERA_RETURN_IF_ERROR(resolve(slot.ref));
      prog_.outputs.push_back(slot);
    }
    prog_.info.activation_bytes = prog_.arena_bytes;
    prog_.info.activation_bytes_no_reuse = prog_.naive_bytes;
    size_t wb = 0;
    for (const auto& t : prog_.constants) wb += t.nbytes();
    prog_.info.weight_bytes = wb;
    return std::move(prog_);
  }

  struct Value {
    std::string name;
    int64_t bytes;
    int root;
    DataType type;  // how its elements are stored (see StoredType)
  };
  PreparedGraph p_;
  LowerOptions opts_;
  std::set<std::string> graph_inputs_, keep_fp32_;
  std::map<std::pair<const void*, DataType>, Ref> const_as_;  // converted constants
  std::map<std::pair<int, DataType>, Ref> cast_;              // run-time values cast once
  Program prog_;
  std::vector<Value> values_;
  std::unordered_map<std::string, int> ids_;
  std::unordered_map<const void*, int32_t> const_index_;
};

}  // namespace

DataType MatmulTypeOf(GpuPrecision p) {
  switch (p) {
    case GpuPrecision::kFp16:
      return DataType::kFloat16;
    case GpuPrecision::kBf16:
      return DataType::kBFloat16;
    default:
      return DataType::kFloat32;
  }
}

ProgramWork CountWork(const Program& program) {
  ProgramWork w;
  for (const auto& s : program.steps) {
    if (const auto* g = std::get_if<GemmInstr>(&s.instr))
      w.flops += 2.0 * static_cast<double>(g->batch) * static_cast<double>(g->m) *
                 static_cast<double>(g->n) * static_cast<double>(g->k);
    if (const auto* c = std::get_if<ConvInstr>(&s.instr))
      w.flops += 2.0 * static_cast<double>(c->n) * static_cast<double>(c->k) *
                 static_cast<double>(c->oh) * static_cast<double>(c->ow) *
                 static_cast<double>(c->c / c->groups) * static_cast<double>(c->r) *
                 static_cast<double>(c->s);
  }
  for (const auto& t : program.constants) w.weight_bytes += static_cast<double>(t.nbytes());
  for (const auto& io : program.inputs) w.io_bytes += static_cast<double>(io.bytes);
  for (const auto& io : program.outputs) w.io_bytes += static_cast<double>(io.bytes);
  return w;
}

LowerOptions LowerOptionsFor(GpuPrecision p) {
  LowerOptions o;
  o.matmul_type = MatmulTypeOf(p);
  o.activation_type = o.matmul_type;
  return o;
}

Result<Program> LowerToProgram(PreparedGraph prepared, const LowerOptions& options) {
  for (const DataType t : {options.matmul_type, options.activation_type})
    if (!IsFloatStorage(t))
      return Status::InvalidArgument(
          std::string("GEMM / convolution operands and activations are stored as FP32, FP16 or "
                      "BF16, got ") +
          DataTypeName(t));
  // cuBLASLt writes an FP16 / BF16 D only from A and B of the same type.
  if (options.activation_type != DataType::kFloat32 &&
      options.activation_type != options.matmul_type)
    return Status::InvalidArgument(
        std::string("activations stored as ") + DataTypeName(options.activation_type) +
        " need GEMM / convolution operands of that type, got " + DataTypeName(options.matmul_type));
  Lowerer l(std::move(prepared), options);
  return l.Run();
}

}  // namespace tessera::cuda

namespace tessera {

Result<GpuPrecision> ParseGpuPrecision(const std::string& name) {
  if (name == "fp32") return GpuPrecision::kFp32;
  if (name == "tf32") return GpuPrecision::kTf32;
  if (name == "fp16") return GpuPrecision::kFp16;
  if (name == "bf16") return GpuPrecision::kBf16;
  return Status::InvalidArgument("precision '" + name +
                                 "' is not supported by the CUDA backend (expected fp32, tf32, "
                                 "fp16 or bf16)");
}

}  // namespace tessera
