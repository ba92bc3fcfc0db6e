// Element-wise activations, Softmax and LayerNormalization on oneDNN's vectorized primitives,
// used when the op's variant maps onto them exactly; other variants use the portable kernels.
#include "engine/cpu/steps.h"

namespace tessera::cpu {
namespace {

using dnnl::memory;

class DnnlStep final : public Step {
 public:
  DnnlStep(DnnlContext* ctx, dnnl::primitive p, std::unordered_map<int, memory> args)
      : ctx_(ctx), prim_(std::move(p)), args_(std::move(args)) {}
  Status Run() override {
    prim_.execute(ctx_->stream, args_);
    ctx_->stream.wait();
    return Status::OK();
  }

 private:
  DnnlContext* ctx_;
  dnnl::primitive prim_;
  std::unordered_map<int, memory> args_;
};

bool ScalarConst(LayoutPlanner* p, const Node& n, size_t i, float* out) {
  if (n.inputs.size() <= i || n.inputs[i].empty()) return true;
  if (!p->IsConst(n.inputs[i])) return false;
  const Tensor& t = p->graph()->initializers.at(n.inputs[i]);
  if (t.numel() != 1) return false;
  *out = static_cast<float>(t.GetAsDouble(0));
  return true;
}

}  // namespace

// Returns false (planning nothing) when `n` is not an activation oneDNN computes exactly.
Result<bool> TryPlanEltwise(LayoutPlanner* p, const Node& n) {
  using A = dnnl::algorithm;
  if (n.inputs.empty() || p->meta()->at(n.inputs[0]).dtype != DataType::kFloat32) return false;
  A alg;
  float alpha = 0, beta = 0;
  const std::string& op = n.op;
  if (op == "Relu")
    alg = A::eltwise_relu;
  else if (op == "LeakyRelu") {
    alg = A::eltwise_relu;
    alpha = n.GetFloat("alpha", 0.01f);
  } else if (op == "Sigmoid")
    alg = A::eltwise_logistic;
  else if (op == "Tanh")
    alg = A::eltwise_tanh;
  else if (op == "HardSwish")
    alg = A::eltwise_hardswish;
  else if (op == "Gelu") {
    alg = n.GetString("approximate", "none") == "tanh" ? A::eltwise_gelu_tanh : A::eltwise_gelu_erf;
  } else if (op == "Elu") {
    alg = A::eltwise_elu;
    alpha = n.GetFloat("alpha", 1.0f);
  } else if (op == "Exp")
    alg = A::eltwise_exp;
  else if (op == "Sqrt")
    alg = A::eltwise_sqrt;
  else if (op == "Abs")
    alg = A::eltwise_abs;
  else if (op == "Clip") {
    alg = A::eltwise_clip;
    alpha = n.GetFloat("min", -3.4e38f);
    beta = n.GetFloat("max", 3.4e38f);
    if (!ScalarConst(p, n, 1, &alpha) || !ScalarConst(p, n, 2, &beta)) return false;
  } else {
    return false;
  }
  DnnlContext* ctx = p->ctx();
  const std::string x = n.inputs[0], y = n.outputs[0];
  const memory::desc md = p->DescOf(x);  // works on blocked layouts as they are
  try {
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, alg, md, alpha, beta);
    dnnl::eltwise_forward::primitive_desc pd(d, ctx->engine);
    p->SetLayout(y, md);
    p->Add({op, {x}, {y}, "", "", [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(md, ctx->engine, ptr(x))},
                                                   {DNNL_ARG_DST, memory(md, ctx->engine, ptr(y))}};
              return std::unique_ptr<Step>(
                  std::make_unique<DnnlStep>(ctx, dnnl::eltwise_forward(pd), std::move(args)));
            }});
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

Result<bool> TryPlanSoftmax(LayoutPlanner* p, const Node& n) {
  if (n.op != "Softmax" || n.inputs.empty()) return false;
  const auto& m = p->meta()->at(n.inputs[0]);
  const int64_t r = static_cast<int64_t>(m.shape.size());
  int64_t axis = n.GetInt("axis", -1);
  if (axis < 0) axis += r;
  // Before opset 13 softmax spans every dim from `axis`; identical only for the last axis.
  if (m.dtype != DataType::kFloat32 || r == 0 || n.op != "Softmax" ||
      (n.GetInt("tessera.opset", 13) < 13 && axis != r - 1))
    return false;
  DnnlContext* ctx = p->ctx();
  const std::string x = p->EnsurePlain(n.inputs[0]), y = n.outputs[0];
  const memory::desc md = PlainDesc(m.shape, m.dtype);
  try {
    dnnl::softmax_forward::desc d(dnnl::prop_kind::forward_inference, md, static_cast<int>(axis));
    dnnl::softmax_forward::primitive_desc pd(d, ctx->engine);
    p->Add({"Softmax", {x}, {y}, "", "", [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(md, ctx->engine, ptr(x))},
                                                   {DNNL_ARG_DST, memory(md, ctx->engine, ptr(y))}};
              return std::unique_ptr<Step>(
                  std::make_unique<DnnlStep>(ctx, dnnl::softmax_forward(pd), std::move(args)));
            }});
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

Result<bool> TryPlanLayerNorm(LayoutPlanner* p, const Node& n) {
  if (n.op != "LayerNormalization" || n.inputs.size() < 2) return false;
  const auto& m = p->meta()->at(n.inputs[0]);
  const int64_t r = static_cast<int64_t>(m.shape.size());
  int64_t axis = n.GetInt("axis", -1);
  if (axis < 0) axis += r;
  for (size_t k = 1; k < n.outputs.size(); ++k)
    if (!n.outputs[k].empty()) return false;  // mean / inv-std outputs requested
  const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
  if (m.dtype != DataType::kFloat32 || axis != r - 1 || r < 2 || !p->IsConst(n.inputs[1]) ||
      (has_bias && !p->IsConst(n.inputs[2])))
    return false;
  const int64_t c = m.shape.back();
  // oneDNN 2.6 takes scale and shift as one [2, C] tensor.
  Tensor ss = Tensor::Allocate(DataType::kFloat32, {2, c});
  const Tensor& g = p->graph()->initializers.at(n.inputs[1]);
  for (int64_t i = 0; i < c; ++i) {
    ss.data<float>()[i] = g.data<float>()[i];
    ss.data<float>()[c + i] =
        has_bias ? p->graph()->initializers.at(n.inputs[2]).data<float>()[i] : 0.0f;
  }
  p->owned().push_back(ss);
  void* ss_ptr = ss.raw();
  DnnlContext* ctx = p->ctx();
  const std::string x = p->EnsurePlain(n.inputs[0]), y = n.outputs[0];
  const memory::desc md = PlainDesc(m.shape, m.dtype);
  const memory::desc ss_md = PlainDesc({2, c}, DataType::kFloat32);
  p->MarkRepacked(n.inputs[1]);
  if (has_bias) p->MarkRepacked(n.inputs[2]);
  try {
    dnnl::layer_normalization_forward::desc d(dnnl::prop_kind::forward_inference, md,
                                              n.GetFloat("epsilon", 1e-5f),
                                              dnnl::normalization_flags::use_scale_shift);
    dnnl::layer_normalization_forward::primitive_desc pd(d, ctx->engine);
    p->Add({"LayerNormalization",
            {x},
            {y},
            "",
            "",
            [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args{
                  {DNNL_ARG_SRC, memory(md, ctx->engine, ptr(x))},
                  {DNNL_ARG_DST, memory(md, ctx->engine, ptr(y))},
                  {DNNL_ARG_SCALE_SHIFT, memory(ss_md, ctx->engine, ss_ptr)}};
              return std::unique_ptr<Step>(std::make_unique<DnnlStep>(
                  ctx, dnnl::layer_normalization_forward(pd), std::move(args)));
            }});
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace tessera::cpu
