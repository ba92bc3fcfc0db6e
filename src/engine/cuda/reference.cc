#include "engine/cuda/reference.h"

#include <cmath>
#include <cstring>

#include "engine/cuda/math.h"

namespace tessera::cuda {
namespace {

class HostRunner {
 public:
  HostRunner(const Program& p, uint8_t* arena) : p_(p), arena_(arena) {}

  const void* In(const Ref& r) const {
    if (r.is_const()) return static_cast<const uint8_t*>(p_.constants[r.konst].raw()) + r.offset;
    return arena_ + r.offset;
  }
  void* Out(const Ref& r) const { return arena_ + r.offset; }
  const float* F(const Ref& r) const {
    return r.valid() ? static_cast<const float*>(In(r)) : nullptr;
  }
  // Floats stored as t (FP32, FP16 or BF16), read as float; the null view for an absent ref.
  AnyFloats V(const Ref& r, DataType t) const { return {r.valid() ? In(r) : nullptr, t}; }
  void Fail() const { *reinterpret_cast<int32_t*>(arena_ + p_.error_offset) = 1; }

  void operator()(const EwInstr& e) const {
    const void* in[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < e.arity; ++k) in[k] = In(e.in[k]);
    void* out = Out(e.out);
    for (int64_t i = 0; i < e.count; ++i) EwElement(e, in, out, i);
  }
  void operator()(const CopyInstr& c) const {
    const uint8_t* in = static_cast<const uint8_t*>(In(c.in));
    uint8_t* out = static_cast<uint8_t*>(Out(c.out));
    for (int64_t i = 0; i < c.count; ++i) {
      int64_t a, b;
      CopyOffsets(c, i, &a, &b);
      std::memcpy(out + b * c.elem, in + a * c.elem, c.elem);
    }
  }
  void operator()(const FillInstr& f) const {
    uint8_t* out = static_cast<uint8_t*>(Out(f.out));
    for (int64_t i = 0; i < f.count; ++i) std::memcpy(out + i * f.elem, &f.bits, f.elem);
  }
  void operator()(const ReduceInstr& r) const {
    const AnyFloats x = V(r.in, r.type);
    void* y = Out(r.out);
    for (int64_t o = 0; o < r.outer; ++o)
      for (int64_t i = 0; i < r.inner; ++i) {
        const int64_t xs = o * r.len * r.inner + i;
        float acc = r.kind == ReduceInstr::Kind::kMax   ? -INFINITY
                    : r.kind == ReduceInstr::Kind::kMin ? INFINITY
                                                        : 0.0f;
        for (int64_t k = 0; k < r.len; ++k) {
          const float v = x[xs + k * r.inner];
          if (r.kind == ReduceInstr::Kind::kMax)
            acc = std::max(acc, v);
          else if (r.kind == ReduceInstr::Kind::kMin)
            acc = std::min(acc, v);
          else
            acc += v;
        }
        if (r.kind == ReduceInstr::Kind::kMean) acc /= static_cast<float>(r.len);
        StoreF(y, r.type, o * r.inner + i, acc);
      }
  }
  void operator()(const SoftmaxInstr& s) const {
    const AnyFloats x = V(s.in, s.type);
    void* y = Out(s.out);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t base = o * s.len * s.inner + i;
        float mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < s.len; ++k) mx = std::max(mx, x[base + k * s.inner]);
        for (int64_t k = 0; k < s.len; ++k) sum += expf(x[base + k * s.inner] - mx);
        for (int64_t k = 0; k < s.len; ++k) {
          const float v = x[base + k * s.inner];
          StoreF(y, s.type, base + k * s.inner, s.log ? v - mx - logf(sum) : expf(v - mx) / sum);
        }
      }
  }
  void operator()(const LayerNormInstr& l) const {
    const AnyFloats x = V(l.in, l.type);
    const float* g = F(l.scale);
    const float* b = F(l.bias);
    void* y = Out(l.out);
    for (int64_t r = 0; r < l.rows; ++r) {
      const int64_t xr = r * l.cols;
      double mean = 0, var = 0;
      for (int64_t c = 0; c < l.cols; ++c) mean += x[xr + c];
      mean /= static_cast<double>(l.cols);
      for (int64_t c = 0; c < l.cols; ++c) var += (x[xr + c] - mean) * (x[xr + c] - mean);
      var /= static_cast<double>(l.cols);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + l.eps));
      for (int64_t c = 0; c < l.cols; ++c) {
        const float v = (x[xr + c] - static_cast<float>(mean)) * inv * g[c];
        StoreF(y, l.type, xr + c, b ? v + b[c] : v);
      }
      if (l.mean.valid()) StoreF(Out(l.mean), l.stat_type, r, static_cast<float>(mean));
      if (l.inv_std.valid()) StoreF(Out(l.inv_std), l.stat_type, r, inv);
    }
  }
  void operator()(const GatherInstr& g) const {
    const uint8_t* data = static_cast<const uint8_t*>(In(g.data));
    const void* idx = In(g.index);
    uint8_t* out = static_cast<uint8_t*>(Out(g.out));
    const int64_t row = g.inner * g.elem;
    for (int64_t o = 0; o < g.outer; ++o)
      for (int64_t j = 0; j < g.count; ++j) {
        int64_t k = LoadI(idx, g.index_type, j);
        if (k < 0) k += g.axis_dim;
        uint8_t* dst = out + (o * g.count + j) * row;
        if (k < 0 || k >= g.axis_dim) {
          Fail();
          std::memset(dst, 0, row);
          continue;
        }
        std::memcpy(dst, data + (o * g.axis_dim + k) * row, row);
      }
  }
  void operator()(const GemmInstr& g) const {
    const void* a = In(g.a);
    const void* b = In(g.b);
    const AnyFloats c = V(g.c, g.cd_type), bias = V(g.bias, g.cd_type);
    void* d = Out(g.d);
    std::vector<float> row(static_cast<size_t>(g.n));
    for (int64_t q = 0; q < g.batch; ++q) {
      const int64_t aq = q * g.sa, bq = q * g.sb;
      for (int64_t i = 0; i < g.m; ++i) {
        std::fill(row.begin(), row.end(), 0.0f);
        for (int64_t kk = 0; kk < g.k; ++kk) {
          const float av = LoadF(a, g.ab_type, aq + (g.ta ? kk * g.lda + i : i * g.lda + kk));
          for (int64_t j = 0; j < g.n; ++j)
            row[j] += av * LoadF(b, g.ab_type, bq + (g.tb ? j * g.ldb + kk : kk * g.ldb + j));
        }
        for (int64_t j = 0; j < g.n; ++j) {
          float v = g.alpha * row[j];
          if (c.p) v += g.beta * c[q * g.sc + i * g.ldc + j];
          if (bias.p) v += bias[j];
          StoreF(d, g.cd_type, q * g.sc + i * g.ldc + j, ApplyAct(g.act, v, g.act_a, g.act_b));
        }
      }
    }
  }
  void operator()(const ConvInstr& c) const {
    const void* x = In(c.x);
    const void* w = In(c.weight);
    const float* bias = F(c.bias);
    const AnyFloats res = V(c.residual, c.y_type);
    void* y = Out(c.y);
    // The library writes its output in xw_type: into y when y has that type, else into tmp.
    void* conv_out = c.tmp.valid() ? Out(c.tmp) : y;
    const int64_t cg = c.c / c.groups, kg = c.k / c.groups;
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t k = 0; k < c.k; ++k) {
        const int64_t grp = k / kg;
        for (int64_t oy = 0; oy < c.oh; ++oy)
          for (int64_t ox = 0; ox < c.ow; ++ox) {
            float acc = 0;
            for (int64_t ci = 0; ci < cg; ++ci) {
              const int64_t xp = (n * c.c + grp * cg + ci) * c.h * c.w;
              const int64_t wp = (k * cg + ci) * c.r * c.s;
              for (int64_t ky = 0; ky < c.r; ++ky) {
                const int64_t iy = oy * c.stride_h - c.pad_h + ky * c.dil_h;
                if (iy < 0 || iy >= c.h) continue;
                for (int64_t kx = 0; kx < c.s; ++kx) {
                  const int64_t ix = ox * c.stride_w - c.pad_w + kx * c.dil_w;
                  if (ix >= 0 && ix < c.w)
                    acc += LoadF(x, c.xw_type, xp + iy * c.w + ix) *
                           LoadF(w, c.xw_type, wp + ky * c.s + kx);
                }
              }
            }
            const int64_t yi = ((n * c.k + k) * c.oh + oy) * c.ow + ox;
            if (c.xw_type != DataType::kFloat32) {  // rounded as the library stores it
              StoreF(conv_out, c.xw_type, yi, acc);
              acc = LoadF(conv_out, c.xw_type, yi);
            }
            if (bias) acc += bias[k];
            if (res.p) acc += res[yi];
            StoreF(y, c.y_type, yi, ApplyAct(c.act, acc, c.act_a, c.act_b));
          }
      }
  }
  void operator()(const PadInstr& p) const {
    const auto* in = static_cast<const uint8_t*>(In(p.in));
    auto* out = static_cast<uint8_t*>(Out(p.out));
    for (int64_t i = 0; i < p.count; ++i)
      std::memcpy(out + i * p.elem, in + PadSource(p, i) * p.elem, p.elem);
  }
  void operator()(const ResizeInstr& r) const {
    const AnyFloats x = V(r.x, r.type);
    const auto* i0 = static_cast<const int64_t*>(In(r.i0));
    const auto* i1 = static_cast<const int64_t*>(In(r.i1));
    const float* w = F(r.w);
    void* y = Out(r.y);
    for (int64_t i = 0; i < r.count; ++i) StoreF(y, r.type, i, ResizeElement(r, x, i0, i1, w, i));
  }
  void operator()(const PoolInstr& p) const {
    const AnyFloats x = V(p.x, p.type);
    void* y = Out(p.y);
    for (int64_t pl = 0; pl < p.planes; ++pl)
      for (int64_t oy = 0; oy < p.oh; ++oy)
        for (int64_t ox = 0; ox < p.ow; ++ox)
          StoreF(y, p.type, (pl * p.oh + oy) * p.ow + ox, PoolElement(p, x, pl, oy, ox));
  }

 private:
  const Program& p_;
  uint8_t* arena_;
};

}  // namespace

Status RunOnHost(const Program& program, const std::vector<Tensor>& inputs,
                 std::vector<Tensor>* outputs) {
  TESSERA_RETURN_IF_ERROR(CheckRunInputs(program.info, inputs));
  std::vector<uint8_t> arena(program.arena_bytes, 0);
  for (size_t i = 0; i < inputs.size(); ++i)
    std::memcpy(arena.data() + program.inputs[i].ref.offset, inputs[i].raw(),
                program.inputs[i].bytes);
  HostRunner run(program, arena.data());
  for (const auto& s : program.steps) std::visit(run, s.instr);
  int32_t err = 0;
  std::memcpy(&err, arena.data() + program.error_offset, sizeof(err));
  if (err)
    return Status::InvalidArgument(
        "an index in the input is out of range (a Gather met an index "
        "outside its data)");
  outputs->clear();
  for (const auto& o : program.outputs) {
    Tensor t = Tensor::Allocate(o.spec.dtype, o.spec.shape);
    std::memcpy(t.raw(), run.In(o.ref), o.bytes);
    outputs->push_back(t);
  }
  return Status::OK();
}

namespace {

// Also a GpuExecutable whose "device" is host memory: one persistent arena, the inputs and
// outputs at their planned places in it, Enqueue running the program there. An emulated GPU
// (runtime/emulated_gpu.h) serves it as the CUDA engine's executables are served.
class HostProgramExecutable final : public GpuExecutable {
 public:
  explicit HostProgramExecutable(Program p)
      : p_(std::move(p)),
        arena_(Tensor::Allocate(DataType::kUInt8, {static_cast<int64_t>(p_.arena_bytes)})) {
    info_ = p_.info;
    info_.activation_bytes = p_.arena_bytes;
    HostRunner view(p_, arena_.data<uint8_t>());
    for (const auto& s : p_.inputs)
      in_.push_back({s.spec, view.Out(s.ref), static_cast<size_t>(s.bytes)});
    for (const auto& s : p_.outputs)
      out_.push_back({s.spec, const_cast<void*>(view.In(s.ref)), static_cast<size_t>(s.bytes)});
  }
  Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) override {
    return RunOnHost(p_, inputs, outputs);
  }
  const ExecutableInfo& info() const override { return info_; }
  const std::vector<DeviceSlot>& device_inputs() const override { return in_; }
  const std::vector<DeviceSlot>& device_outputs() const override { return out_; }
  const void* device_error_word() const override {
    return arena_.data<uint8_t>() + p_.error_offset;
  }
  Status Bind(void* stream) override {
    bound_ = stream;
    return Status::OK();
  }
  Status Enqueue(void* stream) override {
    if (stream != bound_)
      return Status::Internal("host program enqueued on a stream it is not bound to");
    uint8_t* arena = arena_.data<uint8_t>();
    std::memset(arena + p_.error_offset, 0, sizeof(int32_t));
    HostRunner run(p_, arena);
    for (const auto& s : p_.steps) std::visit(run, s.instr);
    return Status::OK();
  }

 private:
  Program p_;
  Tensor arena_;
  ExecutableInfo info_;
  std::vector<DeviceSlot> in_, out_;
  void* bound_ = nullptr;
};

class HostProgramEngine final : public Engine {
 public:
  HostProgramEngine(GpuPrecision p, int device) : opts_(LowerOptionsFor(p)), device_(device) {}
  std::string name() const override { return "cuda-host"; }
  std::string device() const override {
    return device_ < 0 ? "cpu" : "cuda:" + std::to_string(device_);
  }
  Result<std::unique_ptr<Executable>> Compile(const Graph& graph,
                                              const CompileOptions& options) override {
    TESSERA_ASSIGN_OR_RETURN(auto prepared, PrepareGraph(graph, options));
    TESSERA_ASSIGN_OR_RETURN(auto program, LowerToProgram(std::move(prepared), opts_));
    return std::unique_ptr<Executable>(std::make_unique<HostProgramExecutable>(std::move(program)));
  }

 private:
  LowerOptions opts_;
  int device_;
};

}  // namespace

std::unique_ptr<Engine> CreateHostProgramEngine(GpuPrecision precision, int emulated_gpu) {
  return std::make_unique<HostProgramEngine>(precision, emulated_gpu);
}

}  // namespace tessera::cuda
