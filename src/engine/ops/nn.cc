// Inference for the ops backends implement (Conv, MatMul, Gemm, pools) and the Resize kernel.
#include "engine/ops/nn.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera::ops {

using Metas = std::vector<const ValueMeta*>;
using Outs = std::vector<ValueMeta>;
using Ins = std::vector<const Tensor*>;

Result<WindowGeometry> ComputeWindow(const Node& n, const Shape& x, const Shape& w) {
  const bool is_conv = !w.empty();
  if (x.size() < 3)
    return Status::InvalidArgument(n.Describe() + ": input must be N x C x spatial, got " +
                                   ShapeToString(x));
  const size_t sd = x.size() - 2;
  WindowGeometry g;
  g.kernel = is_conv ? std::vector<int64_t>(w.begin() + 2, w.end()) : n.GetInts("kernel_shape");
  if (is_conv && n.Has("kernel_shape") && n.GetInts("kernel_shape") != g.kernel)
    return Status::InvalidArgument(n.Describe() + ": kernel_shape disagrees with weights");
  if (g.kernel.size() != sd)
    return Status::InvalidArgument(n.Describe() + ": kernel has " +
                                   std::to_string(g.kernel.size()) + " spatial dims, input has " +
                                   std::to_string(sd));
  g.strides = n.GetInts("strides", std::vector<int64_t>(sd, 1));
  g.dilations = n.GetInts("dilations", std::vector<int64_t>(sd, 1));
  auto pads = n.GetInts("pads", std::vector<int64_t>(2 * sd, 0));
  if (g.strides.size() != sd || g.dilations.size() != sd || pads.size() != 2 * sd)
    return Status::InvalidArgument(n.Describe() + ": strides/dilations/pads have wrong length");
  for (size_t i = 0; i < sd; ++i)
    if (g.strides[i] <= 0 || g.dilations[i] <= 0 || g.kernel[i] <= 0 || pads[i] < 0 ||
        pads[i + sd] < 0)
      return Status::InvalidArgument(n.Describe() +
                                     ": non-positive stride/dilation/kernel or "
                                     "negative pad");
  const std::string auto_pad = n.GetString("auto_pad", "NOTSET");
  const bool ceil_mode = n.GetInt("ceil_mode", 0) != 0;
  g.out = {x[0], is_conv ? w[0] : x[1]};
  for (size_t i = 0; i < sd; ++i) {
    const int64_t in = x[i + 2], ek = (g.kernel[i] - 1) * g.dilations[i] + 1, s = g.strides[i];
    int64_t pb = pads[i], pe = pads[i + sd], o;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      o = (in + s - 1) / s;
      int64_t total = std::max<int64_t>(0, (o - 1) * s + ek - in);
      pb = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pe = total - pb;
    } else if (auto_pad == "VALID") {
      pb = pe = 0;
      o = (in - ek) / s + 1;
    } else if (auto_pad == "NOTSET") {
      const int64_t span = in + pb + pe - ek;
      if (span < 0)
        o = 0;
      else if (ceil_mode) {
        o = (span + s - 1) / s + 1;
        if ((o - 1) * s >= in + pb) --o;  // the last window must start inside the input
      } else {
        o = span / s + 1;
      }
      // Grow the end pad so the last (ceil-mode) window is fully described.
      pe = std::max<int64_t>(pe, (o - 1) * s + ek - in - pb);
    } else {
      return Status::InvalidArgument(n.Describe() + ": unknown auto_pad '" + auto_pad + "'");
    }
    if (o <= 0)
      return Status::InvalidArgument(n.Describe() + ": window larger than padded input " +
                                     ShapeToString(x));
    g.pad_begin.push_back(pb);
    g.pad_end.push_back(pe);
    g.out.push_back(o);
  }
  return g;
}

namespace {

Status FloatOnly(const Node& n, const Metas& in) {
  for (const auto* m : in)
    if (m && m->dtype != DataType::kFloat32)
      return Status::Unimplemented(n.Describe() + ": input type " + DataTypeName(m->dtype) +
                                   " not supported, expected FP32");
  return Status::OK();
}

Result<Shape> MatMulShape(const Node& n, Shape a, Shape b) {
  if (a.empty() || b.empty()) return Status::InvalidArgument(n.Describe() + ": scalar input");
  bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  if (a.back() != b[b.size() - 2])
    return Status::InvalidArgument(n.Describe() + ": inner dimensions differ: " + ShapeToString(a) +
                                   " x " + ShapeToString(b));
  Shape ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  auto batch = BroadcastShapes(ba, bb);
  if (!batch.ok()) return batch.status().WithContext(n.Describe());
  Shape o = *batch;
  if (!a1) o.push_back(a[a.size() - 2]);
  if (!b1) o.push_back(b.back());
  return o;
}

float NearestIndex(float x, const std::string& mode) {
  if (mode == "floor") return std::floor(x);
  if (mode == "ceil") return std::ceil(x);
  if (mode == "round_prefer_ceil") return std::floor(x + 0.5f);
  // round_prefer_floor: halves go down
  return (x - std::floor(x) == 0.5f) ? std::floor(x) : std::round(x);
}

Result<ResizeTables::Plan> PlanResize(const Node& n, const Metas& in) {
  const Shape& s = in[0]->shape;
  ResizeTables::Plan p;
  p.out = s;
  p.scales.assign(s.size(), 1.0f);
  std::vector<int64_t> sizes;
  std::vector<float> scales;
  if (in.size() > 3 && in[3] && NumElements(in[3]->shape) > 0) {
    TESSERA_ASSIGN_OR_RETURN(sizes, ConstInts(n, in, 3));
  } else if (in.size() > 2 && in[2] && NumElements(in[2]->shape) > 0) {
    if (!in[2]->constant)
      return Status::Unimplemented(n.Describe() + ": scales must be compile-time constants");
    for (int64_t i = 0; i < in[2]->constant->numel(); ++i)
      scales.push_back(static_cast<float>(in[2]->constant->GetAsDouble(i)));
  } else {
    return Status::InvalidArgument(n.Describe() + ": needs scales or sizes");
  }
  // Opset 18: `axes` names the axes that scales / sizes are for (the others keep their size).
  const int64_t rank = static_cast<int64_t>(s.size());
  std::vector<int64_t> axes = n.GetInts("axes", {});
  if (axes.empty())
    for (int64_t a = 0; a < rank; ++a) axes.push_back(a);
  std::vector<bool> seen(s.size(), false);
  for (int64_t& a : axes) {
    if (a < -rank || a >= rank)
      return Status::InvalidArgument(n.Describe() + ": axis " + std::to_string(a) +
                                     " is out of range for rank " + std::to_string(rank));
    if (a < 0) a += rank;
    if (seen[static_cast<size_t>(a)])
      return Status::InvalidArgument(n.Describe() + ": axis " + std::to_string(a) + " repeats");
    seen[static_cast<size_t>(a)] = true;
  }
  if ((!sizes.empty() && sizes.size() != axes.size()) ||
      (!scales.empty() && scales.size() != axes.size()))
    return Status::InvalidArgument(n.Describe() + ": scales / sizes have " +
                                   std::to_string(sizes.empty() ? scales.size() : sizes.size()) +
                                   " entries, expected " + std::to_string(axes.size()) +
                                   (n.Has("axes") ? " (one per axis in axes)" : " (the rank)"));
  // With sizes, keep_aspect_ratio_policy not_larger / not_smaller scales every axis by one
  // factor (the smallest / largest of sizes / input), the size rounded half up.
  const std::string policy = n.GetString("keep_aspect_ratio_policy", "stretch");
  if (policy != "stretch" && policy != "not_larger" && policy != "not_smaller")
    return Status::InvalidArgument(n.Describe() + ": keep_aspect_ratio_policy '" + policy +
                                   "' (expected stretch, not_larger or not_smaller)");
  float kept = policy == "not_larger" ? std::numeric_limits<float>::infinity() : 0.0f;
  if (!sizes.empty() && policy != "stretch")
    for (size_t k = 0; k < axes.size(); ++k) {
      const auto a = static_cast<size_t>(axes[k]);
      if (s[a] == 0) continue;
      const float f = static_cast<float>(sizes[k]) / static_cast<float>(s[a]);
      kept = policy == "not_larger" ? std::min(kept, f) : std::max(kept, f);
    }
  for (size_t k = 0; k < axes.size(); ++k) {
    const auto a = static_cast<size_t>(axes[k]);
    if (!sizes.empty() && policy != "stretch") {
      p.scales[a] = kept;
      p.out[a] = static_cast<int64_t>(std::floor(kept * static_cast<float>(s[a]) + 0.5f));
    } else if (!sizes.empty()) {
      p.out[a] = sizes[k];
      p.scales[a] = s[a] ? static_cast<float>(sizes[k]) / static_cast<float>(s[a]) : 1.0f;
    } else {
      p.scales[a] = scales[k];
      p.out[a] = static_cast<int64_t>(std::floor(static_cast<float>(s[a]) * scales[k]));
    }
    if (p.out[a] <= 0) return Status::InvalidArgument(n.Describe() + ": output size <= 0");
  }
  return p;
}

float SourceCoord(const std::string& ctm, float x, float scale, int64_t in, int64_t out) {
  if (ctm == "align_corners") return out > 1 ? x * (in - 1) / static_cast<float>(out - 1) : 0.0f;
  if (ctm == "half_pixel_symmetric") {  // opset 19: half_pixel, centred when sizes round down
    const float out_exact = scale * static_cast<float>(in);
    const float adjustment = out_exact > 0 ? static_cast<float>(out) / out_exact : 1.0f;
    const float offset = static_cast<float>(in) / 2.0f * (1.0f - adjustment);
    return offset + (x + 0.5f) / scale - 0.5f;
  }
  if (ctm == "asymmetric") return x / scale;
  if (ctm == "tf_half_pixel_for_nn") return (x + 0.5f) / scale;
  if (ctm == "pytorch_half_pixel") return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.0f;
  return (x + 0.5f) / scale - 0.5f;  // half_pixel
}

}  // namespace

Result<ResizeTables> ComputeResize(const Node& n, const std::vector<const ValueMeta*>& in) {
  ResizeTables t;
  TESSERA_ASSIGN_OR_RETURN(t.plan, PlanResize(n, in));
  const std::string mode = n.GetString("mode", "nearest");
  const std::string ctm = n.GetString("coordinate_transformation_mode", "half_pixel");
  const std::string nm = n.GetString("nearest_mode", "round_prefer_floor");
  const Shape& s = in[0]->shape;
  const size_t r = s.size();
  t.i0.resize(r);
  t.i1.resize(r);
  t.w1.resize(r);
  for (size_t a = 0; a < r; ++a) {
    for (int64_t o = 0; o < t.plan.out[a]; ++o) {
      float x = SourceCoord(ctm, static_cast<float>(o), t.plan.scales[a], s[a], t.plan.out[a]);
      if (mode == "nearest") {
        int64_t k = static_cast<int64_t>(NearestIndex(x, nm));
        k = std::clamp<int64_t>(k, 0, s[a] - 1);
        t.i0[a].push_back(k);
        t.i1[a].push_back(k);
        t.w1[a].push_back(0.0f);
      } else {
        x = std::clamp(x, 0.0f, static_cast<float>(s[a] - 1));
        int64_t k = static_cast<int64_t>(std::floor(x));
        int64_t k1 = std::min<int64_t>(k + 1, s[a] - 1);
        t.i0[a].push_back(k);
        t.i1[a].push_back(k1);
        t.w1[a].push_back(x - static_cast<float>(k));
      }
    }
    for (float wv : t.w1[a])
      if (wv != 0.0f) {
        t.lin.push_back(a);
        break;
      }
  }
  return t;
}

void RegisterNn() {
  {
    OpDef d;  // Conv (+ Tessera fusion attributes); computed by the backend.
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_RETURN_IF_ERROR(FloatOnly(n, in));
      const Shape &x = in[0]->shape, &w = in[1]->shape;
      const int64_t group = n.GetInt("group", 1);
      if (w.size() != x.size())
        return Status::InvalidArgument(n.Describe() + ": weight rank " + std::to_string(w.size()) +
                                       " != input rank " + std::to_string(x.size()));
      if (group <= 0 || x[1] != w[1] * group || w[0] % group)
        return Status::InvalidArgument(n.Describe() + ": input has " + std::to_string(x[1]) +
                                       " channels, weights expect " + std::to_string(w[1]) +
                                       " x group " + std::to_string(group));
      if (in.size() > 2 && in[2] && NumElements(in[2]->shape) != w[0])
        return Status::InvalidArgument(n.Describe() + ": bias must have " + std::to_string(w[0]) +
                                       " elements");
      TESSERA_ASSIGN_OR_RETURN(auto g, ComputeWindow(n, x, w));
      if (in.size() > 3 && in[3] && in[3]->shape != g.out)
        return Status::InvalidArgument(n.Describe() + ": fused residual shape mismatch");
      (*out)[0] = {DataType::kFloat32, g.out, nullptr};
      return Status::OK();
    };
    Register("Conv", d);
  }
  for (const char* op : {"MaxPool", "AveragePool"}) {
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_RETURN_IF_ERROR(FloatOnly(n, in));
      if (n.op == "MaxPool" && out->size() > 1)
        return Status::Unimplemented(n.Describe() + ": the Indices output is not supported");
      if (n.GetInt("storage_order", 0))
        return Status::Unimplemented(n.Describe() + ": storage_order=1");
      TESSERA_ASSIGN_OR_RETURN(auto g, ComputeWindow(n, in[0]->shape, {}));
      (*out)[0] = {DataType::kFloat32, g.out, nullptr};
      return Status::OK();
    };
    Register(op, d);
  }
  {
    OpDef d;  // MatMul (+ Tessera bias / activation fusion attributes)
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_RETURN_IF_ERROR(FloatOnly(n, in));
      TESSERA_ASSIGN_OR_RETURN(Shape o, MatMulShape(n, in[0]->shape, in[1]->shape));
      if (in.size() > 2 && in[2] && (NumElements(in[2]->shape) != o.back()))
        return Status::InvalidArgument(n.Describe() + ": fused bias must have N elements");
      if (in.size() > 3 && in[3] && in[3]->shape != o)
        return Status::InvalidArgument(n.Describe() + ": fused residual shape mismatch");
      (*out)[0] = {DataType::kFloat32, o, nullptr};
      return Status::OK();
    };
    Register("MatMul", d);
  }
  {
    OpDef d;  // Gemm: Y = alpha * A' B' + beta * C
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_RETURN_IF_ERROR(FloatOnly(n, in));
      const Shape &a = in[0]->shape, &b = in[1]->shape;
      if (a.size() != 2 || b.size() != 2)
        return Status::InvalidArgument(n.Describe() + ": A and B must be 2-D");
      const bool ta = n.GetInt("transA", 0), tb = n.GetInt("transB", 0);
      int64_t m = ta ? a[1] : a[0], k = ta ? a[0] : a[1], kb = tb ? b[1] : b[0],
              nn = tb ? b[0] : b[1];
      if (k != kb)
        return Status::InvalidArgument(n.Describe() + ": inner dimensions differ (" +
                                       std::to_string(k) + " vs " + std::to_string(kb) + ")");
      if (in.size() > 2 && in[2]) {
        auto s = BroadcastShapes(in[2]->shape, {m, nn});
        if (!s.ok() || *s != Shape{m, nn})
          return Status::InvalidArgument(n.Describe() + ": C " + ShapeToString(in[2]->shape) +
                                         " does not broadcast to [M,N]");
      }
      (*out)[0] = {DataType::kFloat32, {m, nn}, nullptr};
      return Status::OK();
    };
    Register("Gemm", d);
  }
  {
    OpDef d;  // Resize: nearest / linear over any axes (N and C usually scale 1)
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      if (in[0]->dtype != DataType::kFloat32)
        return Status::Unimplemented(n.Describe() + ": only FP32 input is supported");
      std::string mode = n.GetString("mode", "nearest");
      if (mode != "nearest" && mode != "linear")
        return Status::Unimplemented(n.Describe() + ": mode '" + mode +
                                     "' (nearest and linear "
                                     "are supported)");
      if (n.GetInt("antialias", 0)) return Status::Unimplemented(n.Describe() + ": antialias");
      const std::string ctm = n.GetString("coordinate_transformation_mode", "half_pixel");
      if (ctm == "tf_crop_and_resize")
        return Status::Unimplemented(n.Describe() + ": tf_crop_and_resize");
      if (ctm != "half_pixel" && ctm != "half_pixel_symmetric" && ctm != "pytorch_half_pixel" &&
          ctm != "align_corners" && ctm != "asymmetric" && ctm != "tf_half_pixel_for_nn")
        return Status::InvalidArgument(
            n.Describe() + ": coordinate_transformation_mode '" + ctm +
            "' (expected half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, "
            "asymmetric or tf_half_pixel_for_nn)");
      const std::string nm = n.GetString("nearest_mode", "round_prefer_floor");
      if (nm != "round_prefer_floor" && nm != "round_prefer_ceil" && nm != "floor" && nm != "ceil")
        return Status::InvalidArgument(n.Describe() + ": nearest_mode '" + nm +
                                       "' (expected round_prefer_floor, round_prefer_ceil, floor "
                                       "or ceil)");
      TESSERA_ASSIGN_OR_RETURN(auto p, PlanResize(n, in));
      (*out)[0] = {DataType::kFloat32, p.out, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
      std::vector<ValueMeta> m;
      Metas mp = MetasOf(in, &m);
      TESSERA_ASSIGN_OR_RETURN(auto tables, ComputeResize(n, mp));
      const Shape& s = in[0]->shape();
      const size_t r = s.size();
      const ResizeTables::Plan& p = tables.plan;
      const auto &i0 = tables.i0, &i1 = tables.i1;
      const auto& w1 = tables.w1;
      std::vector<int64_t> st(r, 1);
      for (size_t a = r; a-- > 1;) st[a - 1] = st[a] * s[a];
      const float* x = in[0]->data<float>();
      float* y = out[0].data<float>();
      const int64_t total = out[0].numel();
      const std::vector<size_t>& lin = tables.lin;
#pragma omp parallel for if (WorthParallel(total)) schedule(static)
      for (int64_t i = 0; i < total; ++i) {
        std::vector<int64_t> c(r);
        int64_t rem = i;
        for (size_t a = r; a-- > 0;) {
          c[a] = rem % p.out[a];
          rem /= p.out[a];
        }
        float acc = 0;
        const size_t corners = size_t{1} << lin.size();
        for (size_t mask = 0; mask < corners; ++mask) {
          float wt = 1.0f;
          int64_t off = 0;
          size_t li = 0;
          for (size_t a = 0; a < r; ++a) {
            bool is_lin = li < lin.size() && lin[li] == a;
            if (is_lin) {
              bool hi = (mask >> li) & 1;
              float w = w1[a][c[a]];
              wt *= hi ? w : 1.0f - w;
              off += (hi ? i1[a][c[a]] : i0[a][c[a]]) * st[a];
              ++li;
            } else {
              off += i0[a][c[a]] * st[a];
            }
          }
          acc += wt * x[off];
        }
        y[i] = acc;
      }
      return Status::OK();
    };
    Register("Resize", d);
  }
}

}  // namespace tessera::ops
