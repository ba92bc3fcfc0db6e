// Conv, MatMul, Gemm and pooling on oneDNN primitives, created once per compiled shape.
#include <cstring>

#include "engine/cpu/steps.h"
#include "engine/ops/nn.h"

namespace tessera::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using dt = memory::data_type;

Dims ToDims(const Shape& s) { return Dims(s.begin(), s.end()); }

memory::desc Plain(const Shape& s) {
  Dims strides(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) strides[i - 1] = strides[i] * s[i];
  return memory::desc(ToDims(s), dt::f32, strides);
}

memory Mem(DnnlContext* ctx, const memory::desc& d, const void* p) {
  return memory(d, ctx->engine, const_cast<void*>(p));
}

// Appends the fused activation (attribute "tessera.act") as eltwise post-ops.
Status AppendActivation(const Node& n, dnnl::post_ops* po) {
  if (!n.Has("tessera.act")) return Status::OK();
  const std::string act = n.GetString("tessera.act", "");
  const float a = n.GetFloat("tessera.alpha", 0), b = n.GetFloat("tessera.beta", 0);
  using A = dnnl::algorithm;
  if (act == "Relu") po->append_eltwise(1.f, A::eltwise_relu, 0.f, 0.f);
  else if (act == "LeakyRelu") po->append_eltwise(1.f, A::eltwise_relu, a, 0.f);
  else if (act == "Sigmoid") po->append_eltwise(1.f, A::eltwise_logistic, 0.f, 0.f);
  else if (act == "Tanh") po->append_eltwise(1.f, A::eltwise_tanh, 0.f, 0.f);
  else if (act == "HardSwish") po->append_eltwise(1.f, A::eltwise_hardswish, 0.f, 0.f);
  else if (act == "Gelu") po->append_eltwise(1.f, A::eltwise_gelu_erf, 0.f, 0.f);
  else if (act == "Swish") po->append_eltwise(1.f, A::eltwise_swish, 1.f, 0.f);
  else if (act == "Clip") po->append_eltwise(1.f, A::eltwise_clip, a, b);
  else if (act == "HardSigmoid") {
    po->append_eltwise(1.f, A::eltwise_linear, a, b);
    po->append_eltwise(1.f, A::eltwise_clip, 0.f, 1.f);
  } else {
    return Status::Internal(n.Describe() + ": unknown fused activation '" + act + "'");
  }
  return Status::OK();
}

class PrimitiveStep : public Step {
 public:
  PrimitiveStep(DnnlContext* ctx, dnnl::primitive p, std::unordered_map<int, memory> args)
      : ctx_(ctx), prim_(std::move(p)), args_(std::move(args)) {}
  Status Run() override {
    if (copy_bytes_) std::memcpy(copy_dst_, copy_src_, copy_bytes_);
    prim_.execute(ctx_->stream, args_);
    ctx_->stream.wait();
    return Status::OK();
  }
  size_t OwnedBytes() const override {
    size_t b = 0;
    for (const auto& t : owned_) b += t.nbytes();
    return b;
  }
  // Before the primitive runs, copy `bytes` from src to dst (residual into the sum destination).
  void CopyBefore(const void* src, void* dst, size_t bytes) {
    if (src == dst) return;
    copy_src_ = src;
    copy_dst_ = dst;
    copy_bytes_ = bytes;
  }
  void Own(Tensor t) { owned_.push_back(std::move(t)); }

 private:
  DnnlContext* ctx_;
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
  std::vector<Tensor> owned_;
  const void* copy_src_ = nullptr;
  void* copy_dst_ = nullptr;
  size_t copy_bytes_ = 0;
};

// Reorders a constant from `from` into a new owned buffer laid out as `to`.
Tensor Repack(DnnlContext* ctx, const void* src, const memory::desc& from, const memory::desc& to) {
  Tensor t = Tensor::Allocate(DataType::kFloat32, {static_cast<int64_t>(to.get_size() / 4 + 1)});
  memory a = Mem(ctx, from, src), b = Mem(ctx, to, t.raw());
  dnnl::reorder(a, b).execute(ctx->stream, a, b);
  ctx->stream.wait();
  return t;
}

}  // namespace

Result<std::unique_ptr<Step>> MakeConvStep(DnnlContext* ctx, const Node& n,
                                           const std::vector<Tensor>& in, Tensor out) {
  const Tensor& x = in[0];
  const Tensor& w = in[1];
  if (!w.raw())
    return Status::Unimplemented(n.Describe() + ": weights must be constant (initializers)");
  TESSERA_ASSIGN_OR_RETURN(auto geo, ops::ComputeWindow(n, x.shape(), w.shape()));
  const int64_t group = n.GetInt("group", 1);
  Dims wdims = ToDims(w.shape());
  if (group > 1) {
    wdims[0] /= group;
    wdims.insert(wdims.begin(), group);
  }
  memory::desc w_plain = Plain(Shape(wdims.begin(), wdims.end()));
  memory::desc w_any(wdims, dt::f32, memory::format_tag::any);
  const bool has_bias = in.size() > 2 && in[2].defined();
  const bool has_sum = in.size() > 3 && in[3].defined();
  memory::desc b_md = has_bias ? Plain({w.dim(0)}) : memory::desc();
  Dims strides(geo.strides.begin(), geo.strides.end()), dil, pl(geo.pad_begin.begin(), geo.pad_begin.end()),
      pr(geo.pad_end.begin(), geo.pad_end.end());
  for (int64_t d : geo.dilations) dil.push_back(d - 1);  // oneDNN counts dilation from 0
  dnnl::post_ops po;
  if (has_sum) po.append_sum(1.f);
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  memory::desc x_md = Plain(x.shape()), y_md = Plain(out.shape());
  try {
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, x_md, w_any, b_md, y_md,
                                      strides, dil, pl, pr);
    dnnl::convolution_forward::primitive_desc pd(d, attr, ctx->engine);
    std::unordered_map<int, memory> args;
    args[DNNL_ARG_SRC] = Mem(ctx, x_md, x.raw());
    args[DNNL_ARG_DST] = Mem(ctx, y_md, out.raw());
    Tensor packed = Repack(ctx, w.raw(), w_plain, pd.weights_desc());
    args[DNNL_ARG_WEIGHTS] = Mem(ctx, pd.weights_desc(), packed.raw());
    if (has_bias) args[DNNL_ARG_BIAS] = Mem(ctx, b_md, in[2].raw());
    auto step = std::make_unique<PrimitiveStep>(ctx, dnnl::convolution_forward(pd), std::move(args));
    step->Own(packed);
    if (has_sum) step->CopyBefore(in[3].raw(), out.raw(), out.nbytes());
    return std::unique_ptr<Step>(std::move(step));
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this convolution: " + e.what());
  }
}

Result<std::unique_ptr<Step>> MakeMatMulStep(DnnlContext* ctx, const Node& n,
                                             const std::vector<Tensor>& in, Tensor out) {
  Shape a = in[0].shape(), b = in[1].shape();
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const size_t r = std::max(a.size(), b.size());
  while (a.size() < r) a.insert(a.begin(), 1);
  while (b.size() < r) b.insert(b.begin(), 1);
  Shape os(r);
  for (size_t i = 0; i + 2 < r; ++i) os[i] = std::max(a[i], b[i]);
  os[r - 2] = a[r - 2];
  os[r - 1] = b[r - 1];
  if (NumElements(os) != out.numel()) return Status::Internal(n.Describe() + ": matmul shape");
  const bool has_bias = in.size() > 2 && in[2].defined();
  dnnl::post_ops po;
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  memory::desc a_md = Plain(a), b_md = Plain(b), o_md = Plain(os);
  Shape bs(r, 1);
  bs[r - 1] = os[r - 1];
  memory::desc bias_md = has_bias ? Plain(bs) : memory::desc();
  try {
    dnnl::matmul::desc d(a_md, b_md, bias_md, o_md);
    dnnl::matmul::primitive_desc pd(d, attr, ctx->engine);
    std::unordered_map<int, memory> args;
    args[DNNL_ARG_SRC] = Mem(ctx, a_md, in[0].raw());
    args[DNNL_ARG_WEIGHTS] = Mem(ctx, b_md, in[1].raw());
    args[DNNL_ARG_DST] = Mem(ctx, o_md, out.raw());
    if (has_bias) args[DNNL_ARG_BIAS] = Mem(ctx, bias_md, in[2].raw());
    return std::unique_ptr<Step>(
        std::make_unique<PrimitiveStep>(ctx, dnnl::matmul(pd), std::move(args)));
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this MatMul: " + e.what());
  }
}

Result<std::unique_ptr<Step>> MakeGemmStep(DnnlContext* ctx, const Node& n,
                                           const std::vector<Tensor>& in, bool c_is_const,
                                           Tensor out) {
  const bool ta = n.GetInt("transA", 0), tb = n.GetInt("transB", 0);
  const float alpha = n.GetFloat("alpha", 1.0f), beta = n.GetFloat("beta", 1.0f);
  const int64_t m = out.dim(0), nn = out.dim(1);
  const int64_t k = ta ? in[0].dim(0) : in[0].dim(1);
  memory::desc a_md(Dims{m, k}, dt::f32, ta ? Dims{1, m} : Dims{k, 1});
  memory::desc b_md(Dims{k, nn}, dt::f32, tb ? Dims{1, k} : Dims{nn, 1});
  memory::desc o_md = Plain({m, nn});
  Tensor bmat = in[1];
  std::vector<Tensor> owned;
  if (alpha != 1.0f) {
    if (!in[1].raw() || !c_is_const)
      return Status::Unimplemented(n.Describe() + ": alpha != 1 needs a constant B");
    bmat = in[1].Clone();
    for (int64_t i = 0; i < bmat.numel(); ++i) bmat.data<float>()[i] *= alpha;
    owned.push_back(bmat);
  }
  const bool has_c = in.size() > 2 && in[2].defined() && beta != 0.0f;
  memory::desc bias_md;
  Tensor bias;
  dnnl::post_ops po;
  memory::desc c_md;
  if (has_c) {
    Shape cs = in[2].shape();
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (c_is_const) {
      bias = in[2].Reshaped(cs).Clone();
      for (int64_t i = 0; i < bias.numel(); ++i) bias.data<float>()[i] *= beta;
      owned.push_back(bias);
      bias_md = Plain(cs);
    } else {
      if (beta != 1.0f)
        return Status::Unimplemented(n.Describe() + ": beta != 1 with a non-constant C");
      c_md = Plain(cs);
      po.append_binary(dnnl::algorithm::binary_add, c_md);
    }
  }
  TESSERA_RETURN_IF_ERROR(AppendActivation(n, &po));
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  try {
    dnnl::matmul::desc d(a_md, b_md, bias_md, o_md);
    dnnl::matmul::primitive_desc pd(d, attr, ctx->engine);
    std::unordered_map<int, memory> args;
    args[DNNL_ARG_SRC] = Mem(ctx, a_md, in[0].raw());
    args[DNNL_ARG_WEIGHTS] = Mem(ctx, b_md, bmat.raw());
    args[DNNL_ARG_DST] = Mem(ctx, o_md, out.raw());
    if (bias.defined()) args[DNNL_ARG_BIAS] = Mem(ctx, bias_md, bias.raw());
    if (has_c && !c_is_const)
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = Mem(ctx, c_md, in[2].raw());
    auto step = std::make_unique<PrimitiveStep>(ctx, dnnl::matmul(pd), std::move(args));
    for (auto& t : owned) step->Own(t);
    return std::unique_ptr<Step>(std::move(step));
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this Gemm: " + e.what());
  }
}

Result<std::unique_ptr<Step>> MakePoolStep(DnnlContext* ctx, const Node& n, const Tensor& x,
                                           Tensor out) {
  TESSERA_ASSIGN_OR_RETURN(auto geo, ops::ComputeWindow(n, x.shape(), {}));
  using A = dnnl::algorithm;
  A alg = n.op == "MaxPool" ? A::pooling_max
          : n.GetInt("count_include_pad", 0) ? A::pooling_avg_include_padding
                                             : A::pooling_avg_exclude_padding;
  Dims strides(geo.strides.begin(), geo.strides.end()), kernel(geo.kernel.begin(), geo.kernel.end()),
      pl(geo.pad_begin.begin(), geo.pad_begin.end()), pr(geo.pad_end.begin(), geo.pad_end.end()),
      dil;
  for (int64_t d : geo.dilations) dil.push_back(d - 1);
  memory::desc x_md = Plain(x.shape()), y_md = Plain(out.shape());
  try {
    dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, x_md, y_md, strides,
                                     kernel, dil, pl, pr);
    dnnl::pooling_v2_forward::primitive_desc pd(d, ctx->engine);
    std::unordered_map<int, memory> args;
    args[DNNL_ARG_SRC] = Mem(ctx, x_md, x.raw());
    args[DNNL_ARG_DST] = Mem(ctx, y_md, out.raw());
    return std::unique_ptr<Step>(
        std::make_unique<PrimitiveStep>(ctx, dnnl::pooling_v2_forward(pd), std::move(args)));
  } catch (const dnnl::error& e) {
    return Status::Unimplemented(n.Describe() + ": oneDNN cannot run this pooling: " + e.what());
  }
}

}  // namespace tessera::cpu
