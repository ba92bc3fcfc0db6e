// Ops that transformer exports use for positions, masks and lookups: GatherElements, GatherND,
// ScatterND, CumSum, Trilu, IsNaN, IsInf. Computed by these kernels on the CPU engine and when
// folded at compile time (position ids and causal masks usually are); the CUDA lowering refuses
// them by name when they are left to run time.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"

namespace tessera::ops {
namespace {

using Metas = std::vector<const ValueMeta*>;
using Outs = std::vector<ValueMeta>;
using Ins = std::vector<const Tensor*>;

Status IndexType(const Node& n, const ValueMeta& m, const char* what) {
  if (m.dtype != DataType::kInt64 && m.dtype != DataType::kInt32)
    return Status::InvalidArgument(n.Describe() + ": " + what + " must be INT32 or INT64, got " +
                                   DataTypeName(m.dtype));
  return Status::OK();
}

// An index along a dim of `size`: negatives count from the end; out of range is an error.
Result<int64_t> Wrap(const Node& n, int64_t idx, int64_t size) {
  const int64_t i = idx < 0 ? idx + size : idx;
  if (i < 0 || i >= size)
    return Status::InvalidArgument(n.Describe() + ": index " + std::to_string(idx) +
                                   " out of range [" + std::to_string(-size) + ", " +
                                   std::to_string(size) + ")");
  return i;
}

void RegisterGatherElements() {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
    TESSERA_RETURN_IF_ERROR(IndexType(n, *in[1], "indices"));
    const int64_t r = static_cast<int64_t>(in[0]->shape.size());
    const int64_t axis = NormalizeAxis(n.GetInt("axis", 0), r);
    if (axis < 0 || axis >= r || in[1]->shape.size() != in[0]->shape.size())
      return Status::InvalidArgument(n.Describe() + ": indices " + ShapeToString(in[1]->shape) +
                                     " must have data's rank (" + ShapeToString(in[0]->shape) +
                                     ") and axis a dim of it");
    (*out)[0] = {in[0]->dtype, in[1]->shape, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const Shape& ds = in[0]->shape();
    const Shape& is = in[1]->shape();
    const auto axis = static_cast<size_t>(NormalizeAxis(n.GetInt("axis", 0), ds.size()));
    const auto dst_strides = ContiguousStrides(ds);
    const auto idx_strides = ContiguousStrides(is);
    const size_t es = DataTypeSize(in[0]->dtype());
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0].data<uint8_t>();
    for (int64_t e = 0; e < in[1]->numel(); ++e) {
      int64_t at = 0, rest = e;
      for (size_t k = 0; k < is.size(); ++k) {
        const int64_t coord = rest / idx_strides[k];
        rest %= idx_strides[k];
        if (k == axis) {
          TESSERA_ASSIGN_OR_RETURN(int64_t i, Wrap(n, in[1]->GetAsInt64(e), ds[k]));
          at += i * dst_strides[k];
        } else {
          if (coord >= ds[k])
            return Status::InvalidArgument(n.Describe() + ": indices " + ShapeToString(is) +
                                           " exceed data " + ShapeToString(ds) + " off the axis");
          at += coord * dst_strides[k];
        }
      }
      std::memcpy(dst + e * es, src + at * es, es);
    }
    return Status::OK();
  };
  Register("GatherElements", d);
}

void RegisterGatherND() {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
    TESSERA_RETURN_IF_ERROR(IndexType(n, *in[1], "indices"));
    const Shape &ds = in[0]->shape, &is = in[1]->shape;
    const int64_t b = n.GetInt("batch_dims", 0);
    if (is.empty() || b < 0 || b >= static_cast<int64_t>(is.size()) ||
        b >= static_cast<int64_t>(ds.size()))
      return Status::InvalidArgument(n.Describe() + ": batch_dims " + std::to_string(b) +
                                     " does not fit indices " + ShapeToString(is) + " and data " +
                                     ShapeToString(ds));
    const int64_t k = is.back();
    if (k < 1 || b + k > static_cast<int64_t>(ds.size()))
      return Status::InvalidArgument(n.Describe() + ": indices " + ShapeToString(is) +
                                     " must end in a dim of 1.." +
                                     std::to_string(ds.size() - static_cast<size_t>(b)));
    for (int64_t i = 0; i < b; ++i)
      if (ds[static_cast<size_t>(i)] != is[static_cast<size_t>(i)])
        return Status::InvalidArgument(n.Describe() + ": the batch dims of data " +
                                       ShapeToString(ds) + " and indices " + ShapeToString(is) +
                                       " differ");
    Shape o(is.begin(), is.end() - 1);
    o.insert(o.end(), ds.begin() + b + k, ds.end());
    (*out)[0] = {in[0]->dtype, o, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const Shape& ds = in[0]->shape();
    const Shape& is = in[1]->shape();
    const auto b = static_cast<size_t>(n.GetInt("batch_dims", 0));
    const auto k = static_cast<size_t>(is.back());
    const auto strides = ContiguousStrides(ds);
    int64_t batches = 1;
    for (size_t i = 0; i < b; ++i) batches *= ds[i];
    const int64_t per_batch_data = b ? strides[b - 1] : in[0]->numel();
    const int64_t slice = b + k < ds.size() ? strides[b + k - 1] : 1;
    const int64_t tuples = in[1]->numel() / static_cast<int64_t>(k);
    const int64_t per_batch_tuples = tuples / batches;
    const size_t es = DataTypeSize(in[0]->dtype());
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0].data<uint8_t>();
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t at = (t / per_batch_tuples) * per_batch_data;
      for (size_t j = 0; j < k; ++j) {
        TESSERA_ASSIGN_OR_RETURN(
            int64_t i,
            Wrap(n, in[1]->GetAsInt64(t * static_cast<int64_t>(k) + int64_t(j)), ds[b + j]));
        at += i * strides[b + j];
      }
      std::memcpy(dst + t * slice * static_cast<int64_t>(es), src + at * static_cast<int64_t>(es),
                  static_cast<size_t>(slice) * es);
    }
    return Status::OK();
  };
  Register("GatherND", d);
}

void RegisterScatterND() {
  OpDef d;  // data with the slices that indices name replaced by (or combined with) updates
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 3));
    const Shape &ds = in[0]->shape, &is = in[1]->shape, &us = in[2]->shape;
    TESSERA_RETURN_IF_ERROR(IndexType(n, *in[1], "indices"));
    if (in[2]->dtype != in[0]->dtype)
      return Status::InvalidArgument(n.Describe() + ": updates are " + DataTypeName(in[2]->dtype) +
                                     ", data " + DataTypeName(in[0]->dtype));
    if (is.empty() || is.back() < 1 || is.back() > static_cast<int64_t>(ds.size()))
      return Status::InvalidArgument(n.Describe() + ": indices " + ShapeToString(is) +
                                     " must end in a dim of 1.." + std::to_string(ds.size()) +
                                     " (data " + ShapeToString(ds) + ")");
    Shape want(is.begin(), is.end() - 1);
    want.insert(want.end(), ds.begin() + is.back(), ds.end());
    if (us != want)
      return Status::InvalidArgument(n.Describe() + ": updates " + ShapeToString(us) +
                                     ", expected " + ShapeToString(want));
    const std::string red = n.GetString("reduction", "none");
    if (red != "none" && red != "add" && red != "mul" && red != "max" && red != "min")
      return Status::InvalidArgument(n.Describe() + ": reduction '" + red +
                                     "' (expected none, add, mul, max or min)");
    if (red != "none" && in[0]->dtype != DataType::kFloat32 && in[0]->dtype != DataType::kInt64)
      return Status::Unimplemented(n.Describe() + ": reduction '" + red + "' on " +
                                   DataTypeName(in[0]->dtype) + " (FP32 and INT64 are)");
    (*out)[0] = {in[0]->dtype, ds, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const Shape& ds = in[0]->shape();
    const auto k = static_cast<size_t>(in[1]->shape().back());
    const auto strides = ContiguousStrides(ds);
    const int64_t slice = k < ds.size() ? strides[k - 1] : 1;
    const int64_t count = in[1]->numel() / static_cast<int64_t>(k);
    const size_t es = DataTypeSize(in[0]->dtype());
    if (out[0].raw() != in[0]->raw() && in[0]->nbytes())
      std::memcpy(out[0].raw(), in[0]->raw(), in[0]->nbytes());
    enum class Red { kNone, kAdd, kMul, kMax, kMin };
    const std::string name = n.GetString("reduction", "none");
    const Red red = name == "add"   ? Red::kAdd
                    : name == "mul" ? Red::kMul
                    : name == "max" ? Red::kMax
                    : name == "min" ? Red::kMin
                                    : Red::kNone;
    auto* dst = out[0].data<uint8_t>();
    const auto* upd = in[2]->data<uint8_t>();
    for (int64_t i = 0; i < count; ++i) {
      int64_t at = 0;
      for (size_t j = 0; j < k; ++j) {
        TESSERA_ASSIGN_OR_RETURN(
            int64_t idx,
            Wrap(n, in[1]->GetAsInt64(i * static_cast<int64_t>(k) + int64_t(j)), ds[j]));
        at += idx * strides[j];
      }
      if (red == Red::kNone) {
        std::memcpy(dst + at * static_cast<int64_t>(es), upd + i * slice * static_cast<int64_t>(es),
                    static_cast<size_t>(slice) * es);
        continue;
      }
      auto combine = [&](auto* x, const auto* u) {
        for (int64_t e = 0; e < slice; ++e) {
          auto& a = x[at + e];
          const auto b = u[i * slice + e];
          switch (red) {
            case Red::kAdd:
              a = a + b;
              break;
            case Red::kMul:
              a = a * b;
              break;
            case Red::kMax:
              a = std::max(a, b);
              break;
            default:
              a = std::min(a, b);
              break;
          }
        }
      };
      if (in[0]->dtype() == DataType::kFloat32)
        combine(out[0].data<float>(), in[2]->data<float>());
      else
        combine(out[0].data<int64_t>(), in[2]->data<int64_t>());
    }
    return Status::OK();
  };
  Register("ScatterND", d);
}

void RegisterCumSum() {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
    const DataType t = in[0]->dtype;
    if (t != DataType::kFloat32 && t != DataType::kInt64 && t != DataType::kInt32 &&
        t != DataType::kFloat64)
      return Status::Unimplemented(n.Describe() + ": CumSum of " + DataTypeName(t) +
                                   " (FP32, FP64, INT32 and INT64 are supported)");
    TESSERA_ASSIGN_OR_RETURN(auto axis, ConstInts(n, in, 1));
    const int64_t r = static_cast<int64_t>(in[0]->shape.size());
    if (axis.size() != 1 || NormalizeAxis(axis[0], r) < 0 || NormalizeAxis(axis[0], r) >= r)
      return Status::InvalidArgument(n.Describe() + ": axis must be one dim of rank " +
                                     std::to_string(r));
    (*out)[0] = {t, in[0]->shape, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const Shape& s = in[0]->shape();
    const auto axis = static_cast<size_t>(NormalizeAxis(in[1]->GetAsInt64(0), s.size()));
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < axis; ++i) outer *= s[i];
    for (size_t i = axis + 1; i < s.size(); ++i) inner *= s[i];
    const int64_t len = s[axis];
    const bool exclusive = n.GetInt("exclusive", 0) != 0, reverse = n.GetInt("reverse", 0) != 0;
    VisitNumeric(in[0]->dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_arithmetic_v<T>) {
        const T* x = in[0]->data<T>();
        T* y = out[0].data<T>();
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t i = 0; i < inner; ++i) {
            T sum = 0;
            for (int64_t step = 0; step < len; ++step) {
              const int64_t j = reverse ? len - 1 - step : step;
              const int64_t at = (o * len + j) * inner + i;
              if (exclusive) {
                y[at] = sum;
                sum += x[at];
              } else {
                sum += x[at];
                y[at] = sum;
              }
            }
          }
      }
    });
    return Status::OK();
  };
  Register("CumSum", d);
}

void RegisterTrilu() {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
    if (in[0]->shape.size() < 2)
      return Status::InvalidArgument(n.Describe() + ": input " + ShapeToString(in[0]->shape) +
                                     " needs rank >= 2");
    if (in.size() > 1 && in[1]) TESSERA_RETURN_IF_ERROR(ConstInts(n, in, 1).status());
    (*out)[0] = {in[0]->dtype, in[0]->shape, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const Shape& s = in[0]->shape();
    const int64_t rows = s[s.size() - 2], cols = s.back();
    const int64_t k = in.size() > 1 && in[1] && in[1]->numel() ? in[1]->GetAsInt64(0) : 0;
    const bool upper = n.GetInt("upper", 1) != 0;
    const size_t es = DataTypeSize(in[0]->dtype());
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0].data<uint8_t>();
    const int64_t mats = in[0]->numel() / std::max<int64_t>(1, rows * cols);
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t at = (m * rows + i) * cols + j;
          // upper keeps j - i >= k; lower keeps j - i <= k.
          const bool keep = upper ? j - i >= k : j - i <= k;
          if (keep)
            std::memcpy(dst + at * static_cast<int64_t>(es), src + at * static_cast<int64_t>(es),
                        es);
          else
            std::memset(dst + at * static_cast<int64_t>(es), 0, es);
        }
    return Status::OK();
  };
  Register("Trilu", d);
}

// IsNaN, and IsInf (detect_negative / detect_positive) on float inputs: BOOL outputs.
void RegisterFloatTest(const std::string& op) {
  OpDef d;
  d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
    if (in[0]->dtype != DataType::kFloat32 && in[0]->dtype != DataType::kFloat64)
      return Status::Unimplemented(n.Describe() + ": " + n.op + " of " +
                                   DataTypeName(in[0]->dtype) + " (FP32 and FP64 are supported)");
    (*out)[0] = {DataType::kBool, in[0]->shape, nullptr};
    return Status::OK();
  };
  d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
    const bool nan = n.op == "IsNaN";
    const bool neg = n.GetInt("detect_negative", 1) != 0, pos = n.GetInt("detect_positive", 1) != 0;
    auto* y = out[0].data<uint8_t>();
    for (int64_t i = 0; i < in[0]->numel(); ++i) {
      const double v = in[0]->GetAsDouble(i);
      y[i] = nan ? std::isnan(v) : std::isinf(v) && ((v < 0 && neg) || (v > 0 && pos));
    }
    return Status::OK();
  };
  Register(op, d);
}

}  // namespace

void RegisterIndexing() {
  RegisterGatherElements();
  RegisterGatherND();
  RegisterScatterND();
  RegisterCumSum();
  RegisterTrilu();
  RegisterFloatTest("IsNaN");
  RegisterFloatTest("IsInf");
}

}  // namespace tessera::ops
