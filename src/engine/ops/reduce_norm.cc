// Reductions and normalizations: Softmax, LogSoftmax, LayerNormalization, ReduceMean/Sum/Max,
// BatchNormalization (inference), GlobalAveragePool, GlobalMaxPool.
#include <algorithm>
#include <cmath>

#include "engine/ops/ops.h"

namespace tessera::ops {
namespace {

using Metas = std::vector<const ValueMeta*>;
using Outs = std::vector<ValueMeta>;
using Ins = std::vector<const Tensor*>;

Status RequireFloat(const Node& n, const ValueMeta* m) {
  if (m->dtype != DataType::kFloat32)
    return Status::Unimplemented(n.Describe() + ": input type " + DataTypeName(m->dtype) +
                                 " is not supported, expected FP32");
  return Status::OK();
}

// Splits shape at `axis` into (outer, axis dim, inner).
void Split3(const Shape& s, int64_t axis, int64_t* outer, int64_t* dim, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int64_t i = 0; i < axis; ++i) *outer *= s[i];
  *dim = s[axis];
  for (size_t i = axis + 1; i < s.size(); ++i) *inner *= s[i];
}

void RegisterSoftmax(const std::string& op, bool log) {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
    TESSERA_RETURN_IF_ERROR(RequireFloat(n, in[0]));
    int64_t r = static_cast<int64_t>(in[0]->shape.size());
    int64_t a = NormalizeAxis(n.GetInt("axis", -1), r);
    if (a < 0 || a >= r) return Status::InvalidArgument(n.Describe() + ": axis out of range");
    (*out)[0] = {in[0]->dtype, in[0]->shape, nullptr};
    return Status::OK();
  };
  d.kernel = [log](const Node& n, const Ins& in, std::vector<Tensor>& out) {
    const Shape& s = in[0]->shape();
    int64_t r = static_cast<int64_t>(s.size());
    int64_t axis = NormalizeAxis(n.GetInt("axis", -1), r);
    int64_t outer, dim, inner;
    // Before opset 13 softmax normalizes over all dims from `axis` on (coerced to 2-D).
    if (n.GetInt("tessera.opset", 13) < 13) {
      outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= s[i];
      dim = in[0]->numel() / std::max<int64_t>(outer, 1);
      inner = 1;
    } else {
      Split3(s, axis, &outer, &dim, &inner);
    }
    const float* x = in[0]->data<float>();
    float* y = out[0].data<float>();
#pragma omp parallel for if (WorthParallel(outer * dim * inner)) schedule(static) collapse(2)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float* xs = x + o * dim * inner + i;
        float* ys = y + o * dim * inner + i;
        float mx = -INFINITY;
        for (int64_t k = 0; k < dim; ++k) mx = std::max(mx, xs[k * inner]);
        float sum = 0;
        for (int64_t k = 0; k < dim; ++k) {
          float e = std::exp(xs[k * inner] - mx);
          ys[k * inner] = e;
          sum += e;
        }
        if (log) {
          float ls = std::log(sum);
          for (int64_t k = 0; k < dim; ++k) ys[k * inner] = xs[k * inner] - mx - ls;
        } else {
          float inv = 1.0f / sum;
          for (int64_t k = 0; k < dim; ++k) ys[k * inner] *= inv;
        }
      }
    return Status::OK();
  };
  Register(op, d);
}

enum class Red { kMean, kSum, kMax, kMin };

void RegisterReduce(const std::string& op, Red kind) {
  auto axes_of = [](const Node& n, const Metas& in) -> Result<std::vector<int64_t>> {
    int64_t r = static_cast<int64_t>(in[0]->shape.size());
    std::vector<int64_t> axes;
    if (n.Has("axes"))
      axes = n.GetInts("axes");
    else if (in.size() > 1 && in[1]) {
      TESSERA_ASSIGN_OR_RETURN(axes, ConstInts(n, in, 1));
    }
    if (axes.empty() && !n.GetInt("noop_with_empty_axes", 0))
      for (int64_t i = 0; i < r; ++i) axes.push_back(i);
    for (auto& a : axes) {
      a = NormalizeAxis(a, r);
      if (a < 0 || a >= r) return Status::InvalidArgument(n.Describe() + ": axis out of range");
    }
    return axes;
  };
  OpDef d;
  d.infer = [axes_of](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
    TESSERA_RETURN_IF_ERROR(RequireFloat(n, in[0]));
    TESSERA_ASSIGN_OR_RETURN(auto axes, axes_of(n, in));
    bool keep = n.GetInt("keepdims", 1) != 0;
    Shape o;
    for (int64_t i = 0; i < static_cast<int64_t>(in[0]->shape.size()); ++i) {
      bool red = std::find(axes.begin(), axes.end(), i) != axes.end();
      if (!red)
        o.push_back(in[0]->shape[i]);
      else if (keep)
        o.push_back(1);
    }
    (*out)[0] = {in[0]->dtype, o, nullptr};
    return Status::OK();
  };
  d.kernel = [axes_of, kind](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    std::vector<ValueMeta> m;
    Metas mp = MetasOf(in, &m);
    TESSERA_ASSIGN_OR_RETURN(auto axes, axes_of(n, mp));
    const Shape& s = in[0]->shape();
    const size_t r = s.size();
    // Output index for every input element: drop reduced coordinates.
    std::vector<int64_t> ostride(r, 0);
    int64_t st = 1;
    for (size_t i = r; i-- > 0;) {
      bool red = std::find(axes.begin(), axes.end(), static_cast<int64_t>(i)) != axes.end();
      if (!red) {
        ostride[i] = st;
        st *= s[i];
      }
    }
    const int64_t on = out[0].numel(), total = in[0]->numel();
    float* y = out[0].data<float>();
    const float* x = in[0]->data<float>();
    const float init = kind == Red::kMax ? -INFINITY : kind == Red::kMin ? INFINITY : 0.0f;
    std::fill(y, y + on, init);
    // Fast path: the reduced axes are the trailing ones, so each output reads one contiguous run.
    std::sort(axes.begin(), axes.end());
    axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
    const int64_t inner_red = total / std::max<int64_t>(on, 1);
    bool tail_only = true;
    for (size_t i = 0; i < axes.size(); ++i)
      if (axes[i] != static_cast<int64_t>(r - axes.size() + i)) tail_only = false;
    if (tail_only) {
#pragma omp parallel for if (WorthParallel(total)) schedule(static)
      for (int64_t o = 0; o < on; ++o) {
        const float* xs = x + o * inner_red;
        float acc = init;
        for (int64_t k = 0; k < inner_red; ++k) {
          if (kind == Red::kMax)
            acc = std::max(acc, xs[k]);
          else if (kind == Red::kMin)
            acc = std::min(acc, xs[k]);
          else
            acc += xs[k];
        }
        y[o] = acc;
      }
    } else {
      for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, oi = 0;
        for (size_t k = r; k-- > 0;) {
          oi += (rem % s[k]) * ostride[k];
          rem /= s[k];
        }
        if (kind == Red::kMax)
          y[oi] = std::max(y[oi], x[i]);
        else if (kind == Red::kMin)
          y[oi] = std::min(y[oi], x[i]);
        else
          y[oi] += x[i];
      }
    }
    if (kind == Red::kMean && on) {
      const float inv = static_cast<float>(on) / static_cast<float>(std::max<int64_t>(total, 1));
      for (int64_t o = 0; o < on; ++o) y[o] *= inv;
    }
    return Status::OK();
  };
  Register(op, d);
}

}  // namespace

void RegisterReduceNorm() {
  RegisterSoftmax("Softmax", false);
  RegisterSoftmax("LogSoftmax", true);
  RegisterReduce("ReduceMean", Red::kMean);
  RegisterReduce("ReduceSum", Red::kSum);
  RegisterReduce("ReduceMax", Red::kMax);
  RegisterReduce("ReduceMin", Red::kMin);

  {  // LayerNormalization (opset 17): normalize over dims [axis, rank).
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_RETURN_IF_ERROR(RequireFloat(n, in[0]));
      int64_t r = static_cast<int64_t>(in[0]->shape.size());
      int64_t axis = NormalizeAxis(n.GetInt("axis", -1), r);
      if (axis < 0 || axis >= r)
        return Status::InvalidArgument(n.Describe() + ": axis out of range");
      int64_t norm = 1;
      for (int64_t i = axis; i < r; ++i) norm *= in[0]->shape[i];
      if (NumElements(in[1]->shape) != norm ||
          (in.size() > 2 && in[2] && NumElements(in[2]->shape) != norm))
        return Status::InvalidArgument(n.Describe() + ": scale/bias must have " +
                                       std::to_string(norm) + " elements");
      (*out)[0] = {in[0]->dtype, in[0]->shape, nullptr};
      Shape stat = in[0]->shape;
      for (int64_t i = axis; i < r; ++i) stat[i] = 1;
      for (size_t k = 1; k < out->size(); ++k) (*out)[k] = {DataType::kFloat32, stat, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      int64_t r = static_cast<int64_t>(s.size());
      int64_t axis = NormalizeAxis(n.GetInt("axis", -1), r);
      int64_t norm = 1;
      for (int64_t i = axis; i < r; ++i) norm *= s[i];
      const int64_t rows = in[0]->numel() / std::max<int64_t>(norm, 1);
      const float eps = n.GetFloat("epsilon", 1e-5f);
      const float* x = in[0]->data<float>();
      const float* g = in[1]->data<float>();
      const float* b = in.size() > 2 && in[2] ? in[2]->data<float>() : nullptr;
      float* y = out[0].data<float>();
      float* mean_out = out.size() > 1 && out[1].defined() ? out[1].data<float>() : nullptr;
      float* inv_out = out.size() > 2 && out[2].defined() ? out[2].data<float>() : nullptr;
#pragma omp parallel for if (WorthParallel(rows * norm)) schedule(static)
      for (int64_t rr = 0; rr < rows; ++rr) {
        const float* xr = x + rr * norm;
        float* yr = y + rr * norm;
        double sum = 0;
        for (int64_t k = 0; k < norm; ++k) sum += xr[k];
        const float mean = static_cast<float>(sum / norm);
        double var = 0;
        for (int64_t k = 0; k < norm; ++k) {
          float dlt = xr[k] - mean;
          var += dlt * dlt;
        }
        const float inv = 1.0f / std::sqrt(static_cast<float>(var / norm) + eps);
        for (int64_t k = 0; k < norm; ++k) yr[k] = (xr[k] - mean) * inv * g[k] + (b ? b[k] : 0.0f);
        if (mean_out) mean_out[rr] = mean;
        if (inv_out) inv_out[rr] = inv;
      }
      return Status::OK();
    };
    Register("LayerNormalization", d);
  }

  {  // BatchNormalization, inference mode: y = (x - mean) / sqrt(var + eps) * scale + B.
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 5));
      TESSERA_RETURN_IF_ERROR(RequireFloat(n, in[0]));
      if (in[0]->shape.size() < 2)
        return Status::InvalidArgument(n.Describe() + ": input must have rank >= 2");
      const int64_t c = in[0]->shape[1];
      for (int i = 1; i < 5; ++i)
        if (NumElements(in[i]->shape) != c)
          return Status::InvalidArgument(n.Describe() + ": parameter " + std::to_string(i) +
                                         " must have C=" + std::to_string(c) + " elements");
      if (n.GetInt("training_mode", 0))
        return Status::Unimplemented(n.Describe() + ": training_mode=1");
      (*out)[0] = {in[0]->dtype, in[0]->shape, nullptr};
      for (size_t k = 1; k < out->size(); ++k) (*out)[k] = {DataType::kFloat32, {c}, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      const int64_t nb = s[0], c = s[1], sp = in[0]->numel() / std::max<int64_t>(nb * c, 1);
      const float eps = n.GetFloat("epsilon", 1e-5f);
      const float *x = in[0]->data<float>(), *g = in[1]->data<float>(), *b = in[2]->data<float>(),
                  *mu = in[3]->data<float>(), *var = in[4]->data<float>();
      float* y = out[0].data<float>();
#pragma omp parallel for if (WorthParallel(in[0]->numel())) schedule(static) collapse(2)
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
          const float sc = g[ch] / std::sqrt(var[ch] + eps), sh = b[ch] - mu[ch] * sc;
          const float* xs = x + (i * c + ch) * sp;
          float* ys = y + (i * c + ch) * sp;
          for (int64_t k = 0; k < sp; ++k) ys[k] = xs[k] * sc + sh;
        }
      return Status::OK();
    };
    Register("BatchNormalization", d);
  }

  for (bool is_max : {false, true}) {  // GlobalAveragePool / GlobalMaxPool
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_RETURN_IF_ERROR(RequireFloat(n, in[0]));
      if (in[0]->shape.size() < 3)
        return Status::InvalidArgument(n.Describe() + ": input must be N x C x spatial");
      Shape o = in[0]->shape;
      for (size_t i = 2; i < o.size(); ++i) o[i] = 1;
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [is_max](const Node&, const Ins& in, std::vector<Tensor>& out) {
      const int64_t rows = out[0].numel(), sp = in[0]->numel() / std::max<int64_t>(rows, 1);
      const float* x = in[0]->data<float>();
      float* y = out[0].data<float>();
#pragma omp parallel for if (WorthParallel(in[0]->numel())) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const float* xs = x + r * sp;
        float acc = is_max ? -INFINITY : 0.0f;
        for (int64_t k = 0; k < sp; ++k) acc = is_max ? std::max(acc, xs[k]) : acc + xs[k];
        y[r] = is_max ? acc : acc / static_cast<float>(sp);
      }
      return Status::OK();
    };
    Register(is_max ? "GlobalMaxPool" : "GlobalAveragePool", d);
  }
}

}  // namespace tessera::ops
