// Conv, MatMul, Gemm, pooling and reorders on oneDNN primitives.
#include <cstring>

#include "engine/cpu/steps.h"
#include "engine/ops/nn.h"

namespace tessera::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using dt = memory::data_type;

Dims ToDims(const Shape& s) { return Dims(s.begin(), s.end()); }
memory::desc Plain(const Shape& s) { return PlainDesc(s, DataType::kFloat32); }

// Appends the fused activation (attribute "tessera.act") as eltwise post-ops.
Status AppendActivation(const Node& n, dnnl::post_ops* po) {
  if (!n.Has("tessera.act")) return Status::OK();
  const std::string act = n.GetString("tessera.act", "");
  const float a = n.GetFloat("tessera.alpha", 0), b = n.GetFloat("tessera.beta", 0);
  using A = dnnl::algorithm;
  if (act == "Relu")
    po->append_eltwise(1.f, A::eltwise_relu, 0.f, 0.f);
  else if (act == "LeakyRelu")
    po->append_eltwise(1.f, A::eltwise_relu, a, 0.f);
  else if (act == "Sigmoid")
    po->append_eltwise(1.f, A::eltwise_logistic, 0.f, 0.f);
  else if (act == "Tanh")
    po->append_eltwise(1.f, A::eltwise_tanh, 0.f, 0.f);
  else if (act == "HardSwish")
    po->append_eltwise(1.f, A::eltwise_hardswish, 0.f, 0.f);
  else if (act == "Gelu")
    po->append_eltwise(1.f, A::eltwise_gelu_erf, 0.f, 0.f);
  else if (act == "Swish")
    po->append_eltwise(1.f, A::eltwise_swish, 1.f, 0.f);
  else if (act == "Clip")
    po->append_eltwise(1.f, A::eltwise_clip, a, b);
  else if (act == "HardSigmoid") {
    po->append_eltwise(1.f, A::eltwise_linear, a, b);
    po->append_eltwise(1.f, A::eltwise_clip, 0.f, 1.f);
  } else {
    return Status::Internal(n.Describe() + ": unknown fused activation '" + act + "'");
  }
  return Status::OK();
}

class PrimitiveStep final : public Step {
 public:
  PrimitiveStep(DnnlContext* ctx, dnnl::primitive p, std::unordered_map<int, memory> args)
      : ctx_(ctx), prim_(std::move(p)), args_(std::move(args)) {}
  Status Run() override {
    if (pre_copy_bytes_) std::memcpy(pre_dst_, pre_src_, pre_copy_bytes_);
    if (pre_reorder_) {
      pre_reorder_->execute(ctx_->stream, pre_args_);
    }
    prim_.execute(ctx_->stream, args_);
    ctx_->stream.wait();
    return Status::OK();
  }
  // Before the primitive: copy (same layout) or reorder (other layout) src into dst; used to
  // seed a convolution's sum post-op with the residual.
  void SeedDestination(DnnlContext* ctx, const memory::desc& from, const void* src,
                       const memory::desc& to, void* dst) {
    if (src == dst) return;
    if (from == to) {
      pre_src_ = src;
      pre_dst_ = dst;
      pre_copy_bytes_ = to.get_size();
      return;
    }
    memory a(from, ctx->engine, const_cast<void*>(src)), b(to, ctx->engine, dst);
    pre_reorder_ = std::make_unique<dnnl::reorder>(a, b);
    pre_args_ = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
  }

 private:
  DnnlContext* ctx_;
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
  const void* pre_src_ = nullptr;
  void* pre_dst_ = nullptr;
  size_t pre_copy_bytes_ = 0;
  std::unique_ptr<dnnl::reorder> pre_reorder_;
  std::unordered_map<int, memory> pre_args_;
};

memory Mem(DnnlContext* ctx, const memory::desc& d, void* p) { return memory(d, ctx->engine, p); }

}  // namespace

memory::desc PlainDesc(const Shape& s, DataType t) {
  Dims strides(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) strides[i - 1] = strides[i] * s[i];
  dt d = t == DataType::kFloat32 ? dt::f32
         : t == DataType::kInt32 ? dt::s32
         : t == DataType::kInt8  ? dt::s8
         : t == DataType::kUInt8 ? dt::u8
                                 : dt::undef;
  if (s.empty()) return memory::desc(Dims{1}, d, Dims{1});
  return memory::desc(ToDims(s), d, strides);
}

void PlanReorder(LayoutPlanner* p, const std::string& src, const std::string& dst,
                 const memory::desc& from, const memory::desc& to) {
  DnnlContext* ctx = p->ctx();
  p->Add({"Reorder",
          {src},
          {dst},
          "",
          "",
          [ctx, src, dst, from, to](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
            memory a = Mem(ctx, from, ptr(src)), b = Mem(ctx, to, ptr(dst));
            std::unordered_map<int, memory> args{{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
            return std::unique_ptr<Step>(
                std::make_unique<PrimitiveStep>(ctx, dnnl::reorder(a, b), std::move(args)));
          }});
}

Status PlanConv(LayoutPlanner* p, const Node& n) {
  DnnlContext* ctx = p->ctx();
  const std::string& xn = n.inputs[0];
  const std::string& wn = n.inputs[1];
  if (!p->IsConst(wn))
    return Status::Unimplemented(n.Describe() + ": weights must be constant (initializers)");
  const Tensor& w = p->graph()->initializers.at(wn);
  const Shape& xs = p->meta()->at(xn).shape;
  const Shape& ys = p->meta()->at(n.outputs[0]).shape;
  TESSERA_ASSIGN_OR_RETURN(auto geo, ops::ComputeWindow(n, xs, w.shape()));
  const int64_t group = n.GetInt("group", 1);
  Dims wdims = ToDims(w.shape());
  if (group > 1) {
    wdims[0] /= group;
    wdims.insert(wdims.begin(), group);
  }
  const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
  const bool has_sum = n.inputs.size() > 3 && !n.inputs[3].empty();
  memory::desc w_plain = Plain(Shape(wdims.begin(), wdims.end()));
  memory::desc w_any(wdims, dt::f32, memory::format_tag::any);
  memory::desc x_any(ToDims(xs), dt::f32, memory::format_tag::any);
  memory::desc y_any(ToDims(ys), dt::f32, memory::format_tag::any);
  memory::desc b_md = has_bias ? Plain({w.dim(0)}) : memory::desc();
  Dims strides(geo.strides.begin(), geo.strides.end()), dil,
      pl(geo.pad_begin.begin(), geo.pad_begin.end()), pr(geo.pad_end.begin(), geo.pad_end.end());
  for (int64_t d : geo.dilations) dil.push_back(d - 1);  // oneDNN counts dilation from 0
  dnnl::post_ops po;
  if (has_sum) po.append_sum(1.f);
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  try {
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, x_any, w_any, b_md,
                                      y_any, strides, dil, pl, pr);
    dnnl::convolution_forward::primitive_desc pd(d, attr, ctx->engine);
    const memory::desc src_md = pd.src_desc(), dst_md = pd.dst_desc(), w_md = pd.weights_desc();
    const std::string x2 = p->EnsureLayout(xn, src_md);
    const std::string y = n.outputs[0];
    p->SetLayout(y, dst_md);
    Tensor packed = p->Reordered(wn, w_plain, w_md);
    p->owned().push_back(packed);
    p->MarkRepacked(wn);
    void* wptr = packed.raw();
    std::string bias = has_bias ? n.inputs[2] : "", res = has_sum ? n.inputs[3] : "";
    if (has_bias) p->MarkReadRaw(bias);
    memory::desc res_md = has_sum ? p->DescOf(res) : memory::desc();
    std::vector<std::string> reads{x2};
    if (has_bias) reads.push_back(bias);
    if (has_sum) reads.push_back(res);
    const bool inplace = has_sum && !p->IsConst(res) && res_md == dst_md;
    // Profiles tell convolutions apart by kernel and stride ("Conv 3x3 /2").
    std::string label = "Conv ";
    for (size_t i = 0; i < geo.kernel.size(); ++i)
      label += (i ? "x" : "") + std::to_string(geo.kernel[i]);
    if (!geo.strides.empty() && geo.strides[0] > 1) label += " /" + std::to_string(geo.strides[0]);
    if (group > 1) label += group == w.dim(0) ? " depthwise" : " grouped";
    p->Add({label,
            reads,
            {y},
            inplace ? res : "",
            inplace ? y : "",
            [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args;
              args[DNNL_ARG_SRC] = Mem(ctx, src_md, ptr(x2));
              args[DNNL_ARG_WEIGHTS] = Mem(ctx, w_md, wptr);
              args[DNNL_ARG_DST] = Mem(ctx, dst_md, ptr(y));
              if (has_bias) args[DNNL_ARG_BIAS] = Mem(ctx, b_md, ptr(bias));
              auto step = std::make_unique<PrimitiveStep>(ctx, dnnl::convolution_forward(pd),
                                                          std::move(args));
              if (has_sum) step->SeedDestination(ctx, res_md, ptr(res), dst_md, ptr(y));
              return std::unique_ptr<Step>(std::move(step));
            }});
    return Status::OK();
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() +
                                 ": oneDNN cannot run this convolution: " + e.what());
  }
}

Status PlanPool(LayoutPlanner* p, const Node& n) {
  DnnlContext* ctx = p->ctx();
  const std::string& xn = n.inputs[0];
  const Shape& xs = p->meta()->at(xn).shape;
  TESSERA_ASSIGN_OR_RETURN(auto geo, ops::ComputeWindow(n, xs, {}));
  using A = dnnl::algorithm;
  A alg = n.op == "MaxPool"                  ? A::pooling_max
          : n.GetInt("count_include_pad", 0) ? A::pooling_avg_include_padding
                                             : A::pooling_avg_exclude_padding;
  Dims strides(geo.strides.begin(), geo.strides.end()),
      kernel(geo.kernel.begin(), geo.kernel.end()), pl(geo.pad_begin.begin(), geo.pad_begin.end()),
      pr(geo.pad_end.begin(), geo.pad_end.end()), dil;
  for (int64_t d : geo.dilations) dil.push_back(d - 1);
  const memory::desc x_md = p->DescOf(xn);
  memory::desc y_any(ToDims(geo.out), dt::f32, memory::format_tag::any);
  try {
    dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, x_md, y_any, strides,
                                     kernel, dil, pl, pr);
    dnnl::pooling_v2_forward::primitive_desc pd(d, ctx->engine);
    const memory::desc y_md = pd.dst_desc();
    const std::string y = n.outputs[0];
    p->SetLayout(y, y_md);
    p->Add({n.op, {xn}, {y}, "", "", [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args;
              args[DNNL_ARG_SRC] = Mem(ctx, x_md, ptr(xn));
              args[DNNL_ARG_DST] = Mem(ctx, y_md, ptr(y));
              return std::unique_ptr<Step>(std::make_unique<PrimitiveStep>(
                  ctx, dnnl::pooling_v2_forward(pd), std::move(args)));
            }});
    return Status::OK();
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this pooling: " + e.what());
  }
}

namespace {

memory::desc ViewDesc(const StridedView& v) { return memory::desc(v.dims, dt::f32, v.strides); }

// A MatMul that FoldTransposesIntoMatMul gave strided operands or destination, planned as the
// Transposes and dense MatMul it came from (for layouts oneDNN has no fast kernel for).
Status PlanUnfolded(LayoutPlanner* p, const Node& n) {
  Node mm = n;
  int counter = 0;
  auto temp = [&](const std::string& base, const Shape& shape) {
    std::string name = base + "#unfolded" + std::to_string(counter++);
    (*p->meta())[name] = {DataType::kFloat32, shape, nullptr};
    return name;
  };
  auto permuted = [](const Shape& s, const std::vector<int64_t>& perm) {
    Shape out;
    for (int64_t ax : perm) out.push_back(s[ax]);
    return out;
  };
  for (int i = 0; i < 2; ++i) {
    const char* attr = i == 0 ? "tessera.perm_a" : "tessera.perm_b";
    const std::vector<int64_t> perm = n.GetInts(attr);
    mm.attrs.erase(attr);
    if (perm.empty()) continue;
    Node t;
    t.op = "Transpose";
    t.name = n.name + "/transpose" + std::to_string(i);
    t.SetInts("perm", perm);
    t.inputs = {n.inputs[i]};
    t.outputs = {temp(n.inputs[i], permuted(p->meta()->at(n.inputs[i]).shape, perm))};
    TESSERA_RETURN_IF_ERROR(p->PlanNode(t));
    mm.inputs[i] = t.outputs[0];
  }
  const std::vector<int64_t> perm_y = n.GetInts("tessera.perm_y");
  mm.attrs.erase("tessera.perm_y");
  if (perm_y.empty()) return p->PlanNode(mm);
  const Shape& zs = p->meta()->at(n.outputs[0]).shape;
  Shape ys(zs.size());
  for (size_t i = 0; i < perm_y.size(); ++i) ys[perm_y[i]] = zs[i];
  mm.outputs[0] = temp(n.outputs[0], ys);
  TESSERA_RETURN_IF_ERROR(p->PlanNode(mm));
  Node t;
  t.op = "Transpose";
  t.name = n.name + "/transpose_out";
  t.SetInts("perm", perm_y);
  t.inputs = {mm.outputs[0]};
  t.outputs = n.outputs;
  return p->PlanNode(t);
}

}  // namespace

Status PlanMatMul(LayoutPlanner* p, const Node& n) {
  DnnlContext* ctx = p->ctx();
  // oneDNN's gemm-based MatMul applies a GELU post-op slowly (BERT's FFN); its jit eltwise,
  // as a step after the product, is faster.
  if (n.GetString("tessera.act", "") == "Gelu") {
    Node mm = n;
    mm.attrs.erase("tessera.act");
    mm.outputs = {n.outputs[0] + "#pre_gelu"};
    (*p->meta())[mm.outputs[0]] = {DataType::kFloat32, p->meta()->at(n.outputs[0]).shape, nullptr};
    TESSERA_RETURN_IF_ERROR(PlanMatMul(p, mm));
    Node gelu;
    gelu.op = "Gelu";
    gelu.name = n.name + "/gelu";
    gelu.inputs = mm.outputs;
    gelu.outputs = n.outputs;
    return p->PlanNode(gelu);
  }
  const std::string an = p->EnsurePlain(n.inputs[0]), bn = p->EnsurePlain(n.inputs[1]);
  Shape a = p->meta()->at(an).shape, b = p->meta()->at(bn).shape;
  // Operands and destination that FoldTransposesIntoMatMul left transposed in place.
  const std::vector<int64_t> perm_a = n.GetInts("tessera.perm_a"),
                             perm_b = n.GetInts("tessera.perm_b"),
                             perm_y = n.GetInts("tessera.perm_y");
  const bool strided = !perm_a.empty() || !perm_b.empty() || !perm_y.empty();
  const memory::desc a_view = perm_a.empty() ? memory::desc() : ViewDesc(TransposedRead(a, perm_a));
  const memory::desc b_view = perm_b.empty() ? memory::desc() : ViewDesc(TransposedRead(b, perm_b));
  if (!perm_a.empty()) a = a_view.dims();
  if (!perm_b.empty()) b = b_view.dims();
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const size_t r = std::max(a.size(), b.size());
  while (a.size() < r) a.insert(a.begin(), 1);
  while (b.size() < r) b.insert(b.begin(), 1);
  Shape os(r);
  for (size_t i = 0; i + 2 < r; ++i) os[i] = std::max(a[i], b[i]);
  os[r - 2] = a[r - 2];
  os[r - 1] = b[r - 1];
  const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
  const bool has_sum = n.inputs.size() > 3 && !n.inputs[3].empty();
  const std::string res = has_sum ? p->EnsurePlain(n.inputs[3]) : "";
  dnnl::post_ops po;
  if (has_sum) po.append_sum(1.f);
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  if (n.Has("tessera.scale")) attr.set_output_scales(0, {n.GetFloat("tessera.scale", 1.f)});
  const memory::desc a_md = perm_a.empty() ? Plain(a) : a_view;
  const memory::desc b_md = perm_b.empty() ? Plain(b) : b_view;
  const memory::desc o_md =
      perm_y.empty() ? Plain(os)
                     : ViewDesc(TransposedWrite(p->meta()->at(n.outputs[0]).shape, perm_y));
  Shape bs(r, 1);
  bs[r - 1] = os[r - 1];
  const memory::desc bias_md = has_bias ? Plain(bs) : memory::desc();
  const std::string bias = has_bias ? n.inputs[2] : "", y = n.outputs[0];
  if (has_bias) p->MarkReadRaw(bias);
  const bool b_const = p->IsConst(bn);
  try {
    // Constant 2-D weights are stored transposed (contiguous along K): oneDNN's sgemm packs
    // them faster than row-major [K, N] (measured on bert_base's 768x3072 weights).
    memory::desc w_md = b_md;
    void* bpacked = nullptr;
    if (b_const) {
      Dims wd = ToDims(b), ws(r, 0);
      const int64_t kk = b[r - 2], nn = b[r - 1];
      ws[r - 2] = 1;
      ws[r - 1] = kk;
      int64_t st = kk * nn;
      for (size_t i = r - 2; i-- > 0;) {
        ws[i] = st;
        st *= b[i];
      }
      w_md = memory::desc(wd, dt::f32, ws);
      Tensor packed = p->Reordered(bn, b_md, w_md);
      p->owned().push_back(packed);
      p->MarkRepacked(bn);
      bpacked = packed.raw();
    }
    dnnl::matmul::desc d(a_md, w_md, bias_md, o_md);
    dnnl::matmul::primitive_desc pd(d, attr, ctx->engine);
    if (strided && std::string(pd.impl_info_str()).rfind("ref", 0) == 0) return PlanUnfolded(p, n);
    std::vector<std::string> reads{an};
    if (!bpacked) reads.push_back(bn);
    if (has_bias) reads.push_back(bias);
    if (has_sum) reads.push_back(res);
    const bool inplace = has_sum && !p->IsConst(res);
    p->Add({b_const ? "MatMul (weights)" : "MatMul",
            reads,
            {y},
            inplace ? res : "",
            inplace ? y : "",
            [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args;
              args[DNNL_ARG_SRC] = Mem(ctx, a_md, ptr(an));
              args[DNNL_ARG_WEIGHTS] = Mem(ctx, w_md, bpacked ? bpacked : ptr(bn));
              args[DNNL_ARG_DST] = Mem(ctx, o_md, ptr(y));
              if (has_bias) args[DNNL_ARG_BIAS] = Mem(ctx, bias_md, ptr(bias));
              auto step = std::make_unique<PrimitiveStep>(ctx, dnnl::matmul(pd), std::move(args));
              if (has_sum) step->SeedDestination(ctx, o_md, ptr(res), o_md, ptr(y));
              return std::unique_ptr<Step>(std::move(step));
            }});
    return Status::OK();
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this MatMul: " + e.what());
  }
}

Status PlanGemm(LayoutPlanner* p, const Node& n) {
  DnnlContext* ctx = p->ctx();
  const std::string an = p->EnsurePlain(n.inputs[0]);
  std::string bn = p->EnsurePlain(n.inputs[1]);
  const bool ta = n.GetInt("transA", 0), tb = n.GetInt("transB", 0);
  const float alpha = n.GetFloat("alpha", 1.0f), beta = n.GetFloat("beta", 1.0f);
  const Shape& ys = p->meta()->at(n.outputs[0]).shape;
  const int64_t m = ys[0], nn = ys[1];
  const int64_t k = ta ? p->meta()->at(an).shape[0] : p->meta()->at(an).shape[1];
  const memory::desc a_md(Dims{m, k}, dt::f32, ta ? Dims{1, m} : Dims{k, 1});
  const memory::desc b_md(Dims{k, nn}, dt::f32, tb ? Dims{1, k} : Dims{nn, 1});
  const memory::desc o_md = Plain({m, nn});
  if (p->IsConst(bn)) p->MarkReadRaw(bn);
  // Y = alpha * A'B' + beta * C. alpha is oneDNN's output scale; C (times beta) is the bias when
  // it is constant and alpha is 1, otherwise a binary-add post-op (applied after the scale).
  const bool has_c = n.inputs.size() > 2 && !n.inputs[2].empty() && beta != 0.0f;
  const std::string cn = has_c ? p->EnsurePlain(n.inputs[2]) : "";
  const bool c_const = has_c && p->IsConst(cn);
  memory::desc bias_md, c_md;
  void* bias_ptr = nullptr;    // constant C as bias
  void* c_post_ptr = nullptr;  // constant C as post-op operand
  dnnl::post_ops po;
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (has_c) {
    Shape cs = p->meta()->at(cn).shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (c_const) {
      Tensor scaled = p->graph()->initializers.at(cn).Reshaped(cs).Clone();
      for (int64_t i = 0; i < scaled.numel(); ++i) scaled.data<float>()[i] *= beta;
      p->owned().push_back(scaled);
      if (alpha == 1.0f) {
        bias_ptr = scaled.raw();
        bias_md = Plain(cs);
      } else {
        c_post_ptr = scaled.raw();
        c_md = Plain(cs);
        po.append_binary(dnnl::algorithm::binary_add, c_md);
      }
    } else {
      if (beta != 1.0f)
        return Status::Unimplemented(n.Describe() + ": beta != 1 with a non-constant C");
      c_md = Plain(cs);
      po.append_binary(dnnl::algorithm::binary_add, c_md);
    }
  }
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  attr.set_post_ops(po);
  const std::string y = n.outputs[0];
  try {
    dnnl::matmul::desc d(a_md, b_md, bias_md, o_md);
    dnnl::matmul::primitive_desc pd(d, attr, ctx->engine);
    std::vector<std::string> reads{an, bn};
    if (has_c && !c_const) reads.push_back(cn);
    p->Add({"Gemm", reads, {y}, "", "", [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args;
              args[DNNL_ARG_SRC] = Mem(ctx, a_md, ptr(an));
              args[DNNL_ARG_WEIGHTS] = Mem(ctx, b_md, ptr(bn));
              args[DNNL_ARG_DST] = Mem(ctx, o_md, ptr(y));
              if (bias_ptr) args[DNNL_ARG_BIAS] = Mem(ctx, bias_md, bias_ptr);
              if (has_c && !bias_ptr)
                args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
                    Mem(ctx, c_md, c_post_ptr ? c_post_ptr : ptr(cn));
              return std::unique_ptr<Step>(
                  std::make_unique<PrimitiveStep>(ctx, dnnl::matmul(pd), std::move(args)));
            }});
    return Status::OK();
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this Gemm: " + e.what());
  }
}

}  // namespace tessera::cpu
