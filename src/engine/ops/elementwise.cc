// Element-wise ops: unary math, binary arithmetic/comparison with broadcasting, Where, Clip, Cast.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"

namespace tessera::ops {

BroadcastIter::BroadcastIter(const Shape& out_shape, const std::vector<Shape>& in_shapes)
    : out(out_shape) {
  const size_t r = out.size();
  // Merge trailing dims into the row while every input agrees on broadcast-or-not for them.
  strides.resize(in_shapes.size(), std::vector<int64_t>(r, 0));
  for (size_t k = 0; k < in_shapes.size(); ++k) {
    const Shape& s = in_shapes[k];
    int64_t st = 1;
    for (size_t i = r; i-- > 0;) {
      size_t j = i + s.size();
      if (j < r) break;  // leading broadcast dims keep stride 0
      int64_t d = s[j - r];
      strides[k][i] = d == 1 ? 0 : st;
      st *= d;
    }
  }
  if (r == 0) return;
  inner = out[r - 1];
  rows = inner ? NumElements(out) / inner : 0;
}

int64_t BroadcastIter::RowOffset(size_t k, int64_t row) const {
  int64_t off = 0;
  const auto& st = strides[k];
  for (size_t i = out.size() - 1; i-- > 0;) {
    int64_t d = out[i];
    off += (row % d) * st[i];
    row /= d;
  }
  return off;
}

namespace {

Status InferSame(const Node& n, const std::vector<const ValueMeta*>& in,
                 std::vector<ValueMeta>* out) {
  TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
  (*out)[0].dtype = in[0]->dtype;
  (*out)[0].shape = in[0]->shape;
  return Status::OK();
}

void RegisterUnaryFloat(const std::string& op, float (*f)(float, float, float),
                        std::function<void(const Node&, float*, float*)> params) {
  OpDef d;
  d.infer = [op](const Node& n, const std::vector<const ValueMeta*>& in,
                 std::vector<ValueMeta>* out) -> Status {
    TESSERA_RETURN_IF_ERROR(InferSame(n, in, out));
    if (in[0]->dtype != DataType::kFloat32 && in[0]->dtype != DataType::kFloat64)
      return Status::Unimplemented(n.Describe() + ": input type " + DataTypeName(in[0]->dtype) +
                                   " not supported, expected FP32");
    return Status::OK();
  };
  d.kernel = [f, params](const Node& n, const std::vector<const Tensor*>& in,
                         std::vector<Tensor>& out) -> Status {
    float a = 0, b = 0;
    if (params) params(n, &a, &b);
    const int64_t cnt = in[0]->numel();
    if (in[0]->dtype() == DataType::kFloat64) {
      const double* x = in[0]->data<double>();
      double* y = out[0].data<double>();
      for (int64_t i = 0; i < cnt; ++i) y[i] = f(static_cast<float>(x[i]), a, b);
      return Status::OK();
    }
    const float* x = in[0]->data<float>();
    float* y = out[0].data<float>();
#pragma omp parallel for if (WorthParallel(cnt)) schedule(static)
    for (int64_t i = 0; i < cnt; ++i) y[i] = f(x[i], a, b);
    return Status::OK();
  };
  Register(op, d);
}

// Unary ops valid on signed ints too (Neg, Abs) use this.
template <typename F>
void RegisterUnaryNumeric(const std::string& op, F f) {
  OpDef d;
  d.infer = InferSame;
  d.kernel = [f](const Node& n, const std::vector<const Tensor*>& in,
                 std::vector<Tensor>& out) -> Status {
    Status st;
    bool ok = VisitNumeric(in[0]->dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, Bool8> || std::is_unsigned_v<T>) {
        st = Status::Unimplemented(n.Describe() + " on unsigned/bool input");
      } else {
        const T* x = in[0]->data<T>();
        T* y = out[0].data<T>();
        const int64_t cnt = in[0]->numel();
#pragma omp parallel for if (WorthParallel(cnt)) schedule(static)
        for (int64_t i = 0; i < cnt; ++i) y[i] = static_cast<T>(f(x[i]));
      }
    });
    if (!ok) return Status::Unimplemented(n.Describe() + ": unsupported dtype");
    return st;
  };
  Register(op, d);
}

enum class BinKind { kArith, kCompare, kLogic };

// Runs y = f(a, b) over a broadcast pair.
template <typename TA, typename TO, typename F>
void BroadcastBinary(const Tensor& a, const Tensor& b, Tensor& o, F f) {
  const TA* pa = a.data<TA>();
  const TA* pb = b.data<TA>();
  TO* po = o.data<TO>();
  const int64_t n = o.numel();
  if (a.numel() == n && b.numel() == n) {
#pragma omp parallel for if (WorthParallel(n)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  if (b.numel() == 1 && a.numel() == n) {
    const TA s = pb[0];
#pragma omp parallel for if (WorthParallel(n)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], s);
    return;
  }
  if (a.numel() == 1 && b.numel() == n) {
    const TA s = pa[0];
#pragma omp parallel for if (WorthParallel(n)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(s, pb[i]);
    return;
  }
  BroadcastIter it(o.shape(), {a.shape(), b.shape()});
  const int64_t inner = it.inner, sa = it.InnerStride(0), sb = it.InnerStride(1);
#pragma omp parallel for if (WorthParallel(n)) schedule(static)
  for (int64_t r = 0; r < it.rows; ++r) {
    const TA* ra = pa + it.RowOffset(0, r);
    const TA* rb = pb + it.RowOffset(1, r);
    TO* ro = po + r * inner;
    if (sa && sb)
      for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[j], rb[j]);
    else if (sa)
      for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[j], rb[0]);
    else if (sb)
      for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[0], rb[j]);
    else
      for (int64_t j = 0; j < inner; ++j) ro[j] = f(ra[0], rb[0]);
  }
}

template <typename T>
T ArithOp(char op, T a, T b) {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      if constexpr (std::is_integral_v<T>)
        return b == 0 ? T(0) : static_cast<T>(a / b);
      else
        return a / b;
    case 'p':
      return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case 'm':
      return a < b ? a : b;
    case 'M':
      return a > b ? a : b;
    case '%':  // ONNX Mod, fmod=0: the result takes the divisor's sign (like Python)
      if constexpr (std::is_integral_v<T>) {
        if (b == 0) return T(0);
        T r = static_cast<T>(a % b);
        if constexpr (std::is_signed_v<T>)
          if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
        return r;
      } else {
        T r = std::fmod(a, b);
        return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
      }
    case 'f':  // ONNX Mod, fmod=1: C's truncating remainder
      if constexpr (std::is_integral_v<T>)
        return b == 0 ? T(0) : static_cast<T>(a % b);
      else
        return std::fmod(a, b);
  }
  return a;
}

void RegisterBinary(const std::string& op, char sym, BinKind kind) {
  OpDef d;
  d.infer = [kind](const Node& n, const std::vector<const ValueMeta*>& in,
                   std::vector<ValueMeta>* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
    if (in[0]->dtype != in[1]->dtype && n.op != "Pow")
      return Status::InvalidArgument(n.Describe() + ": input types differ (" +
                                     DataTypeName(in[0]->dtype) + " vs " +
                                     DataTypeName(in[1]->dtype) + ")");
    auto s = BroadcastShapes(in[0]->shape, in[1]->shape);
    if (!s.ok()) return s.status().WithContext(n.Describe());
    (*out)[0].shape = *s;
    (*out)[0].dtype = kind == BinKind::kArith ? in[0]->dtype : DataType::kBool;
    if (kind == BinKind::kLogic && in[0]->dtype != DataType::kBool)
      return Status::InvalidArgument(n.Describe() + " expects BOOL inputs");
    return Status::OK();
  };
  d.kernel = [sym0 = sym, kind](const Node& n, const std::vector<const Tensor*>& in,
                                std::vector<Tensor>& out) -> Status {
    const char sym = sym0 == '%' && n.GetInt("fmod", 0) ? 'f' : sym0;
    const Tensor& a = *in[0];
    Tensor b = *in[1];
    if (sym == 'p' && b.dtype() != a.dtype()) {  // Pow with a differently typed exponent
      Tensor c = Tensor::Allocate(a.dtype(), b.shape());
      VisitNumeric(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (!std::is_same_v<T, Bool8>)
          for (int64_t i = 0; i < b.numel(); ++i) c.data<T>()[i] = static_cast<T>(b.GetAsDouble(i));
      });
      b = c;
    }
    if (sym == 'p' && a.dtype() == DataType::kFloat32 && b.numel() == 1) {
      const float e = b.data<float>()[0];
      const float* x = a.data<float>();
      float* y = out[0].data<float>();
      const int64_t cnt = a.numel();
      if (e == 2.0f) {
        for (int64_t i = 0; i < cnt; ++i) y[i] = x[i] * x[i];
        return Status::OK();
      }
      if (e == 0.5f) {
        for (int64_t i = 0; i < cnt; ++i) y[i] = std::sqrt(x[i]);
        return Status::OK();
      }
    }
    Status st;
    bool ok = VisitNumeric(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, Bool8>) {
        if (kind != BinKind::kLogic) {
          st = Status::Unimplemented(n.Describe() + " on BOOL inputs");
          return;
        }
        BroadcastBinary<uint8_t, uint8_t>(a, b, out[0], [sym](uint8_t x, uint8_t y) -> uint8_t {
          return sym == '&' ? (x && y) : sym == '|' ? (x || y) : (x != y);
        });
      } else if (kind == BinKind::kArith) {
        // The four common ops get loops without a per-element switch, so they vectorize.
        if (sym == '+')
          BroadcastBinary<T, T>(a, b, out[0], [](T x, T y) { return static_cast<T>(x + y); });
        else if (sym == '-')
          BroadcastBinary<T, T>(a, b, out[0], [](T x, T y) { return static_cast<T>(x - y); });
        else if (sym == '*')
          BroadcastBinary<T, T>(a, b, out[0], [](T x, T y) { return static_cast<T>(x * y); });
        else if (sym == '/' && std::is_floating_point_v<T>)
          BroadcastBinary<T, T>(a, b, out[0], [](T x, T y) { return static_cast<T>(x / y); });
        else
          BroadcastBinary<T, T>(a, b, out[0], [sym](T x, T y) { return ArithOp<T>(sym, x, y); });
      } else if (kind == BinKind::kCompare) {
        BroadcastBinary<T, uint8_t>(a, b, out[0], [sym](T x, T y) -> uint8_t {
          return sym == '='   ? x == y
                 : sym == '<' ? x < y
                 : sym == '>' ? x > y
                 : sym == 'l' ? x <= y
                              : x >= y;
        });
      } else {
        st = Status::InvalidArgument(n.Describe() + " expects BOOL inputs");
      }
    });
    if (!ok) return Status::Unimplemented(n.Describe() + ": unsupported dtype");
    return st;
  };
  Register(op, d);
}

float Erf(float x, float, float) { return std::erf(x); }
float GeluErf(float x, float, float) {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}
float GeluTanh(float x, float, float) {
  return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

}  // namespace

void RegisterElementwise() {
  auto no = std::function<void(const Node&, float*, float*)>();
  RegisterUnaryFloat(
      "Relu", [](float x, float, float) { return x > 0 ? x : 0.0f; }, no);
  RegisterUnaryFloat(
      "Sigmoid", [](float x, float, float) { return 1.0f / (1.0f + std::exp(-x)); }, no);
  RegisterUnaryFloat(
      "Tanh", [](float x, float, float) { return std::tanh(x); }, no);
  RegisterUnaryFloat("Erf", Erf, no);
  RegisterUnaryFloat(
      "Sqrt", [](float x, float, float) { return std::sqrt(x); }, no);
  RegisterUnaryFloat(
      "Exp", [](float x, float, float) { return std::exp(x); }, no);
  RegisterUnaryFloat(
      "Log", [](float x, float, float) { return std::log(x); }, no);
  RegisterUnaryFloat(
      "Reciprocal", [](float x, float, float) { return 1.0f / x; }, no);
  RegisterUnaryFloat(
      "Floor", [](float x, float, float) { return std::floor(x); }, no);
  RegisterUnaryFloat(
      "Ceil", [](float x, float, float) { return std::ceil(x); }, no);
  RegisterUnaryFloat(
      "Softplus", [](float x, float, float) { return std::log1p(std::exp(x)); }, no);
  RegisterUnaryFloat(
      "HardSwish",
      [](float x, float, float) { return x * std::fmin(1.0f, std::fmax(0.0f, x / 6.0f + 0.5f)); },
      no);
  RegisterUnaryFloat(
      "HardSigmoid",
      [](float x, float a, float b) { return std::fmin(1.0f, std::fmax(0.0f, a * x + b)); },
      [](const Node& n, float* a, float* b) {
        *a = n.GetFloat("alpha", 0.2f);
        *b = n.GetFloat("beta", 0.5f);
      });
  RegisterUnaryFloat(
      "LeakyRelu", [](float x, float a, float) { return x >= 0 ? x : a * x; },
      [](const Node& n, float* a, float*) { *a = n.GetFloat("alpha", 0.01f); });
  RegisterUnaryFloat(
      "Elu", [](float x, float a, float) { return x >= 0 ? x : a * (std::exp(x) - 1); },
      [](const Node& n, float* a, float*) { *a = n.GetFloat("alpha", 1.0f); });
  // Gelu is ONNX opset 20; Tessera also produces it by fusing the Erf pattern torch exports.
  RegisterUnaryFloat(
      "Gelu",
      [](float x, float tanh_approx, float) {
        return tanh_approx != 0 ? GeluTanh(x, 0, 0) : GeluErf(x, 0, 0);
      },
      [](const Node& n, float* a, float*) {
        *a = n.GetString("approximate", "none") == "tanh" ? 1.0f : 0.0f;
      });
  RegisterUnaryNumeric("Neg", [](auto x) { return -x; });
  RegisterUnaryNumeric("Abs", [](auto x) { return x < 0 ? -x : x; });

  RegisterBinary("Add", '+', BinKind::kArith);
  RegisterBinary("Sub", '-', BinKind::kArith);
  RegisterBinary("Mul", '*', BinKind::kArith);
  RegisterBinary("Div", '/', BinKind::kArith);
  RegisterBinary("Pow", 'p', BinKind::kArith);
  RegisterBinary("Equal", '=', BinKind::kCompare);
  RegisterBinary("Less", '<', BinKind::kCompare);
  RegisterBinary("Greater", '>', BinKind::kCompare);
  RegisterBinary("LessOrEqual", 'l', BinKind::kCompare);
  RegisterBinary("GreaterOrEqual", 'g', BinKind::kCompare);
  RegisterBinary("And", '&', BinKind::kLogic);
  RegisterBinary("Or", '|', BinKind::kLogic);
  RegisterBinary("Xor", '^', BinKind::kLogic);

  // Min / Max: variadic in ONNX; the two-input form covers exported models.
  RegisterBinary("Min", 'm', BinKind::kArith);
  RegisterBinary("Max", 'M', BinKind::kArith);
  RegisterBinary("Mod", '%', BinKind::kArith);

  {  // Not
    OpDef d;
    d.infer = InferSame;
    d.kernel = [](const Node&, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
      for (int64_t i = 0; i < in[0]->numel(); ++i)
        out[0].data<uint8_t>()[i] = !in[0]->data<uint8_t>()[i];
      return Status::OK();
    };
    Register("Not", d);
  }

  {  // Clip: bounds from attributes (opset < 11) or optional inputs 1 and 2.
    OpDef d;
    d.infer = [](const Node& n, const std::vector<const ValueMeta*>& in,
                 std::vector<ValueMeta>* out) -> Status {
      TESSERA_RETURN_IF_ERROR(InferSame(n, in, out));
      if (in[0]->dtype != DataType::kFloat32)
        return Status::Unimplemented(n.Describe() + ": only FP32 input is supported");
      return Status::OK();
    };
    d.kernel = [](const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
      float lo = n.GetFloat("min", -INFINITY), hi = n.GetFloat("max", INFINITY);
      if (in.size() > 1 && in[1]) lo = static_cast<float>(in[1]->GetAsDouble(0));
      if (in.size() > 2 && in[2]) hi = static_cast<float>(in[2]->GetAsDouble(0));
      const float* x = in[0]->data<float>();
      float* y = out[0].data<float>();
      const int64_t cnt = in[0]->numel();
#pragma omp parallel for if (WorthParallel(cnt)) schedule(static)
      for (int64_t i = 0; i < cnt; ++i) y[i] = std::fmin(hi, std::fmax(lo, x[i]));
      return Status::OK();
    };
    Register("Clip", d);
  }

  {  // Where(cond, x, y) with three-way broadcasting.
    OpDef d;
    d.infer = [](const Node& n, const std::vector<const ValueMeta*>& in,
                 std::vector<ValueMeta>* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 3));
      if (in[0]->dtype != DataType::kBool)
        return Status::InvalidArgument(n.Describe() + ": condition must be BOOL, got " +
                                       DataTypeName(in[0]->dtype));
      if (in[1]->dtype != in[2]->dtype)
        return Status::InvalidArgument(n.Describe() + ": X and Y types differ");
      auto s = BroadcastShapes(in[0]->shape, in[1]->shape);
      if (!s.ok()) return s.status().WithContext(n.Describe());
      auto s2 = BroadcastShapes(*s, in[2]->shape);
      if (!s2.ok()) return s2.status().WithContext(n.Describe());
      (*out)[0] = {in[1]->dtype, *s2, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node&, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
      BroadcastIter it(out[0].shape(), {in[0]->shape(), in[1]->shape(), in[2]->shape()});
      const size_t es = DataTypeSize(out[0].dtype());
      const uint8_t* c = in[0]->data<uint8_t>();
      const uint8_t* x = in[1]->data<uint8_t>();
      const uint8_t* y = in[2]->data<uint8_t>();
      uint8_t* o = out[0].data<uint8_t>();
      const int64_t sc = it.InnerStride(0), sx = it.InnerStride(1), sy = it.InnerStride(2);
      for (int64_t r = 0; r < it.rows; ++r) {
        const int64_t oc = it.RowOffset(0, r), ox = it.RowOffset(1, r), oy = it.RowOffset(2, r);
        for (int64_t j = 0; j < it.inner; ++j) {
          const uint8_t* src = c[oc + j * sc] ? x + (ox + j * sx) * es : y + (oy + j * sy) * es;
          std::memcpy(o + (r * it.inner + j) * es, src, es);
        }
      }
      return Status::OK();
    };
    Register("Where", d);
  }

  {  // Cast between numeric types (FP16/BF16 excepted).
    OpDef d;
    d.infer = [](const Node& n, const std::vector<const ValueMeta*>& in,
                 std::vector<ValueMeta>* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      auto t = n.GetInt("to", 0);
      DataType dt = DataType::kInvalid;
      switch (t) {  // ONNX TensorProto.DataType values
        case 1:
          dt = DataType::kFloat32;
          break;
        case 2:
          dt = DataType::kUInt8;
          break;
        case 3:
          dt = DataType::kInt8;
          break;
        case 4:
          dt = DataType::kUInt16;
          break;
        case 5:
          dt = DataType::kInt16;
          break;
        case 6:
          dt = DataType::kInt32;
          break;
        case 7:
          dt = DataType::kInt64;
          break;
        case 9:
          dt = DataType::kBool;
          break;
        case 11:
          dt = DataType::kFloat64;
          break;
        case 12:
          dt = DataType::kUInt32;
          break;
        case 13:
          dt = DataType::kUInt64;
          break;
        default:
          return Status::Unimplemented(n.Describe() + ": cast to ONNX type " + std::to_string(t) +
                                       " is not supported");
      }
      (*out)[0] = {dt, in[0]->shape, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
      Status st;
      const int64_t cnt = in[0]->numel();
      bool ok = VisitNumeric(in[0]->dtype(), [&](auto stag) {
        using S = decltype(stag);
        VisitNumeric(out[0].dtype(), [&](auto dtag) {
          using D = decltype(dtag);
          const S* s = in[0]->data<S>();
          D* dst = out[0].data<D>();
          for (int64_t i = 0; i < cnt; ++i) {
            if constexpr (std::is_same_v<D, Bool8>) {
              dst[i].v = ToDouble(s[i]) != 0.0;
            } else if constexpr (std::is_same_v<S, Bool8>) {
              dst[i] = static_cast<D>(s[i].v);
            } else {
              dst[i] = static_cast<D>(s[i]);
            }
          }
        });
      });
      if (!ok)
        return Status::Unimplemented(n.Describe() + ": cast from " + DataTypeName(in[0]->dtype()));
      return st;
    };
    Register("Cast", d);
  }
}

}  // namespace tessera::ops
