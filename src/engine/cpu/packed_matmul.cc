// MatMul with constant 2-D weights on the packed GEMM (sgemm.h): the weights are packed once
// here, at compile time; bias, residual sum, output scale and simple activations are applied in
// the GEMM's epilogue.
#include <cstring>

#include "engine/cpu/sgemm.h"
#include "engine/cpu/steps.h"

namespace tessera::cpu {
namespace {

constexpr int64_t kMaxRows = 512;

class PackedMatMulStep final : public Step {
 public:
  PackedMatMulStep(std::shared_ptr<const PackedMatrix> b, int64_t m, const float* a, float* c,
                   const float* residual, GemmEpilogue ep)
      : b_(std::move(b)), m_(m), a_(a), c_(c), residual_(residual), ep_(ep) {}
  Status Run() override {
    if (residual_ && residual_ != c_)
      std::memcpy(c_, residual_, sizeof(float) * static_cast<size_t>(m_ * b_->n()));
    PackedGemm(m_, a_, b_->k(), *b_, c_, b_->n(), ep_);
    return Status::OK();
  }

 private:
  std::shared_ptr<const PackedMatrix> b_;
  int64_t m_;
  const float* a_;
  float* c_;
  const float* residual_;  // seeded into C before the product (null: no residual)
  GemmEpilogue ep_;
};

}  // namespace

Result<bool> TryPlanPackedMatMul(LayoutPlanner* p, const Node& n) {
  if (!p->packed_gemm || !PackedGemmSupported() || n.inputs.size() < 2) return false;
  const std::string& bn = n.inputs[1];
  if (!p->IsConst(bn)) return false;
  const Tensor& w = p->graph()->initializers.at(bn);
  if (w.dtype() != DataType::kFloat32 || w.rank() < 2) return false;
  for (size_t i = 0; i + 2 < w.rank(); ++i)
    if (w.dim(i) != 1) return false;  // batched weights: oneDNN's matmul
  const auto& am = p->meta()->at(n.inputs[0]);
  if (am.dtype != DataType::kFloat32 || am.shape.size() < 2) return false;
  const int64_t k = w.dim(w.rank() - 2), nn = w.dim(w.rank() - 1);
  if (am.shape.back() != k || k == 0 || nn == 0) return false;
  const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
  const bool has_sum = n.inputs.size() > 3 && !n.inputs[3].empty();
  GemmEpilogue ep;
  ep.scale = n.GetFloat("tessera.scale", 1.0f);
  if (has_sum && ep.scale != 1.0f) return false;  // the scale must not touch the residual
  const std::string act = n.GetString("tessera.act", "");
  if (act == "Relu") {
    ep.act = GemmEpilogue::Act::kRelu;
  } else if (act == "LeakyRelu") {
    ep.act = GemmEpilogue::Act::kLeakyRelu;
    ep.alpha = n.GetFloat("tessera.alpha", 0.01f);
  } else if (act == "Clip") {
    ep.act = GemmEpilogue::Act::kClip;
    ep.alpha = n.GetFloat("tessera.alpha", 0);
    ep.beta = n.GetFloat("tessera.beta", 0);
  } else if (act == "Gelu") {
    ep.act = GemmEpilogue::Act::kGelu;
  } else if (!act.empty()) {
    return false;
  }
  if (has_bias) {
    const std::string& bias = n.inputs[2];
    if (!p->IsConst(bias)) return false;
    const Tensor& bt = p->graph()->initializers.at(bias);
    if (bt.dtype() != DataType::kFloat32 || bt.numel() != nn) return false;
  }
  // The output shape has A's leading dims (B's are all 1), so A and C are contiguous M x K and
  // M x N matrices.
  const Shape& ys = p->meta()->at(n.outputs[0]).shape;
  const int64_t m = NumElements(am.shape) / k;
  if (NumElements(ys) != m * nn) return false;
  // Tall products (large batches) stream the weights once per 192 rows; oneDNN's sgemm is
  // faster there (measured at 1024 x 768 x 3072).
  if (m > kMaxRows) return false;

  const std::string an = p->EnsurePlain(n.inputs[0]);
  const std::string res = has_sum ? p->EnsurePlain(n.inputs[3]) : "";
  Tensor storage = p->Derive(
      "pack16", bn, [&] { return PackedMatrix::Pack(w.data<float>(), k, nn, nn).storage(); });
  auto packed = std::make_shared<const PackedMatrix>(storage, k, nn);
  p->owned().push_back(packed->storage());  // counted in the executable's weight bytes
  p->MarkRepacked(bn);
  const std::string bias = has_bias ? n.inputs[2] : "", y = n.outputs[0];
  if (has_bias) p->MarkReadRaw(bias);
  ep.accumulate = has_sum;
  std::vector<std::string> reads{an};
  if (has_bias) reads.push_back(bias);
  if (has_sum) reads.push_back(res);
  const bool inplace = has_sum && !p->IsConst(res);
  p->Add({"MatMul (weights, packed)",
          reads,
          {y},
          inplace ? res : "",
          inplace ? y : "",
          [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
            GemmEpilogue e = ep;
            if (has_bias) e.bias = static_cast<const float*>(ptr(bias));
            return std::unique_ptr<Step>(std::make_unique<PackedMatMulStep>(
                packed, m, static_cast<const float*>(ptr(an)), static_cast<float*>(ptr(y)),
                has_sum ? static_cast<const float*>(ptr(res)) : nullptr, e));
          }});
  return true;
}

}  // namespace tessera::cpu
