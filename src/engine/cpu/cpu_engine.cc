// The CPU backend: prepared graph -> layout plan -> steps over one planned arena.
#include <omp.h>

#include <chrono>
#include <cstring>

#include "engine/cpu/steps.h"
#include "engine/prepare.h"

namespace tessera {
namespace cpu {

using dnnl::memory;

memory::desc LayoutPlanner::DescOf(const std::string& v) const {
  auto it = layout_.find(v);
  if (it != layout_.end()) return it->second;
  const auto& m = meta_->at(v);
  return PlainDesc(m.shape, m.dtype);
}

void LayoutPlanner::SetLayout(const std::string& v, const memory::desc& d) {
  const auto& m = meta_->at(v);
  if (d == PlainDesc(m.shape, m.dtype)) return;
  layout_[v] = d;
  extra_bytes_[v] = d.get_size();
}

std::string LayoutPlanner::RootOf(const std::string& v) const {
  auto it = alias_root_.find(v);
  return it == alias_root_.end() ? v : it->second;
}

void LayoutPlanner::MergeStorage(const std::string& v, const std::string& root) {
  for (auto& [_, r] : alias_root_)
    if (r == v) r = root;
  alias_root_[v] = root;
}

size_t LayoutPlanner::BytesOf(const std::string& v) const {
  const auto& m = meta_->at(v);
  size_t b = static_cast<size_t>(NumElements(m.shape)) * DataTypeSize(m.dtype);
  auto it = extra_bytes_.find(v);
  return it == extra_bytes_.end() ? b : std::max(b, it->second);
}

namespace {
std::string DescKey(const memory::desc& d) {
  return std::string(reinterpret_cast<const char*>(&d.data), sizeof(d.data));
}
}  // namespace

Tensor LayoutPlanner::Derive(const std::string& tag, const std::string& source,
                             const std::function<Tensor()>& make) {
  if (!cache) return make();
  return cache->GetOrMake(tag, {&graph_->initializers.at(source)}, make);
}

Tensor LayoutPlanner::Reordered(const std::string& source, const memory::desc& from,
                                const memory::desc& to) {
  return Derive("reorder " + DescKey(from) + DescKey(to), source, [&] {
    Tensor t = Tensor::Allocate(DataType::kUInt8, {static_cast<int64_t>(to.get_size())});
    memory a(from, ctx_->engine, graph_->initializers.at(source).raw()),
        b(to, ctx_->engine, t.raw());
    dnnl::reorder(a, b).execute(ctx_->stream, a, b);
    ctx_->stream.wait();
    return t;
  });
}

std::string LayoutPlanner::EnsureLayout(const std::string& v, const memory::desc& desc) {
  const memory::desc cur = DescOf(v);
  if (cur == desc) return v;
  if (IsConst(v)) {  // constants are reordered once, now
    const std::string name = v + "#layout" + std::to_string(temp_counter_++);
    graph_->initializers[name] = Reordered(v, cur, desc);
    (*meta_)[name] = meta_->at(v);
    return name;
  }
  const std::string name = v + "#layout" + std::to_string(temp_counter_++);
  (*meta_)[name] = meta_->at(v);
  (*meta_)[name].constant = nullptr;
  SetLayout(name, desc);
  PlanReorder(this, v, name, cur, desc);
  return name;
}

std::string LayoutPlanner::EnsurePlain(const std::string& v) {
  if (v.empty() || IsConst(v) || !layout_.count(v)) return v;
  auto it = plain_copy_.find(v);
  if (it != plain_copy_.end()) return it->second;
  const auto& m = meta_->at(v);
  const std::string name = v + "#plain";
  (*meta_)[name] = {m.dtype, m.shape, nullptr};
  PlanReorder(this, v, name, layout_.at(v), PlainDesc(m.shape, m.dtype));
  plain_copy_[v] = name;
  return name;
}

std::vector<std::string> LayoutPlanner::DroppableConstants() const {
  std::vector<std::string> out;
  for (const auto& v : repacked_)
    if (!read_raw_.count(v)) out.push_back(v);
  return out;
}

namespace {

class KernelStep final : public Step {
 public:
  KernelStep(const Node& n, const ops::OpDef* def, std::vector<Tensor> in, std::vector<Tensor> out)
      : node_(n), def_(def), in_(std::move(in)), out_(std::move(out)) {
    for (auto& t : in_) in_ptrs_.push_back(t.defined() ? &t : nullptr);
  }
  Status Run() override {
    Status st = def_->kernel(node_, in_ptrs_, out_);
    return st.ok() ? st : st.WithContext("running " + node_.Describe());
  }

 private:
  Node node_;
  const ops::OpDef* def_;
  std::vector<Tensor> in_;
  std::vector<const Tensor*> in_ptrs_;
  std::vector<Tensor> out_;
};

}  // namespace

Status LayoutPlanner::PlanNode(const Node& n) {
  const ops::OpDef* def = ops::FindOp(n.op);
  if (n.op == "Conv") {
    if (winograd) {
      TESSERA_ASSIGN_OR_RETURN(bool planned, TryPlanWinogradConv(this, n));
      if (planned) return Status::OK();
    }
    return PlanConv(this, n);
  }
  if (n.op == "MaxPool" || n.op == "AveragePool") return PlanPool(this, n);
  if (n.op == "MatMul") {
    TESSERA_ASSIGN_OR_RETURN(bool planned, TryPlanPackedMatMul(this, n));
    return planned ? Status::OK() : PlanMatMul(this, n);
  }
  if (n.op == "Gemm") return PlanGemm(this, n);
  for (auto* fn : {TryPlanEltwise, TryPlanSoftmax, TryPlanLayerNorm}) {
    TESSERA_ASSIGN_OR_RETURN(bool planned, fn(this, n));
    if (planned) return Status::OK();
  }
  if (!def || !def->kernel)
    return Status::Unimplemented(n.Describe() + " has no CPU implementation");
  std::vector<std::string> ins;
  for (const auto& v : n.inputs) {
    ins.push_back(EnsurePlain(v));
    if (!v.empty() && IsConst(v)) MarkReadRaw(v);
  }
  if (def->alias && !ins.empty() && !IsConst(ins[0])) {  // storage shared; nothing to run
    alias_root_[n.outputs[0]] = RootOf(ins[0]);
    return Status::OK();
  }
  Node node = n;
  std::vector<std::string> outs = n.outputs;
  passes::MetaMap* meta = meta_;
  Add({n.op, ins, outs, "", "",
       [node, def, ins, outs, meta](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
         std::vector<Tensor> in, out;
         for (const auto& v : ins) {
           if (v.empty()) {
             in.emplace_back();
             continue;
           }
           const auto& m = meta->at(v);
           in.push_back(Tensor::View(m.dtype, m.shape, ptr(v)));
         }
         for (const auto& v : outs) {
           if (v.empty()) {
             out.emplace_back();
             continue;
           }
           const auto& m = meta->at(v);
           out.push_back(Tensor::View(m.dtype, m.shape, ptr(v)));
         }
         return std::unique_ptr<Step>(std::make_unique<KernelStep>(node, def, in, out));
       }});
  return Status::OK();
}

namespace {

class CpuExecutable final : public Executable {
 public:
  explicit CpuExecutable(const CompileOptions& o)
      : profile_(o.profile),
        optimize_(o.optimize),
        winograd_(o.winograd),
        packed_gemm_(o.packed_gemm),
        constants_(o.constants.get()) {}
  Status Build(PreparedGraph p);
  Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) override;
  const ExecutableInfo& info() const override { return info_; }
  std::map<std::string, double> OpProfileMs() const override { return profile_ms_; }

 private:
  DnnlContext ctx_;
  ExecutableInfo info_;
  Graph graph_;  // constants
  passes::MetaMap meta_;
  std::vector<Tensor> owned_;  // repacked constants
  Tensor arena_;
  std::vector<Tensor> input_slots_, output_views_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::vector<std::string> labels_;
  bool profile_;
  bool optimize_, winograd_, packed_gemm_;
  ConstantCache* constants_;  // only during Build: executables must not keep the cache alive
  std::map<std::string, double> profile_ms_;
};

Status CpuExecutable::Build(PreparedGraph p) {
  DescribeIo(p, &info_);
  graph_ = std::move(p.graph);
  meta_ = std::move(p.meta);
  for (auto& [name, t] : graph_.initializers) meta_[name].constant = &t;
  if (optimize_) FoldTransposesIntoMatMul(&graph_, &meta_);
  LayoutPlanner planner(&ctx_, &graph_, &meta_);
  planner.winograd = winograd_;
  planner.packed_gemm = packed_gemm_;
  planner.cache = constants_;
  for (const auto& n : graph_.nodes) TESSERA_RETURN_IF_ERROR(planner.PlanNode(n));
  std::vector<std::string> outs;
  for (const auto& o : graph_.outputs) outs.push_back(planner.EnsurePlain(o.name));
  for (const auto& v : planner.DroppableConstants()) graph_.initializers.erase(v);
  owned_ = std::move(planner.owned());
  constants_ = nullptr;
  auto& plan_steps = planner.steps();

  // Lifetimes over step indices; graph inputs are born before step 0, outputs live past the end.
  const int n_steps = static_cast<int>(plan_steps.size());
  std::unordered_map<std::string, passes::BufferRequest> req;
  auto touch = [&](const std::string& v, int t) {
    if (v.empty() || graph_.initializers.count(v)) return;
    const std::string r = planner.RootOf(v);
    auto [it, fresh] = req.try_emplace(r);
    if (fresh) it->second = {r, planner.BytesOf(r), t, t};
    it->second.first = std::min(it->second.first, t);
    it->second.last = std::max(it->second.last, t);
  };
  for (const auto& in : graph_.inputs) touch(in.name, -1);
  for (int i = 0; i < n_steps; ++i) {
    for (const auto& v : plan_steps[i].reads) touch(v, i);
    for (const auto& v : plan_steps[i].writes) touch(v, i);
  }
  for (const auto& v : outs) touch(v, n_steps);
  // In-place sums: the output inherits the residual's buffer when the residual dies here.
  for (int i = 0; i < n_steps; ++i) {
    const auto& s = plan_steps[i];
    if (s.inplace_from.empty()) continue;
    const std::string rr = planner.RootOf(s.inplace_from), ry = planner.RootOf(s.inplace_to);
    auto ir = req.find(rr), iy = req.find(ry);
    if (rr == ry || ir == req.end() || iy == req.end() || ir->second.last != i ||
        iy->second.first != i || ir->second.bytes < iy->second.bytes)
      continue;
    bool read_elsewhere = false;  // e.g. conv(x) + x: the source must not be overwritten
    for (const auto& v : s.reads)
      if (v != s.inplace_from && !v.empty() && planner.RootOf(v) == rr) read_elsewhere = true;
    if (read_elsewhere) continue;
    ir->second.last = std::max(ir->second.last, iy->second.last);
    req.erase(iy);
    planner.MergeStorage(ry, rr);
  }
  std::vector<passes::BufferRequest> reqs;
  for (auto& [_, r] : req) reqs.push_back(r);
  passes::MemoryPlan plan = passes::PlanMemory(reqs);
  info_.activation_bytes = plan.arena_bytes;
  info_.activation_bytes_no_reuse = plan.naive_bytes;
  arena_ = Tensor::Allocate(DataType::kUInt8, {static_cast<int64_t>(plan.arena_bytes)});

  Resolver ptr = [&](const std::string& v) -> void* {
    auto c = graph_.initializers.find(v);
    if (c != graph_.initializers.end()) return c->second.raw();
    return arena_.data<uint8_t>() + plan.offsets.at(planner.RootOf(v));
  };
  for (const auto& in : graph_.inputs)
    input_slots_.push_back(Tensor::View(in.dtype, meta_.at(in.name).shape, ptr(in.name)));
  for (size_t i = 0; i < outs.size(); ++i) {
    const auto& m = meta_.at(outs[i]);
    output_views_.push_back(Tensor::View(m.dtype, m.shape, ptr(outs[i])));
  }
  for (auto& s : plan_steps) {
    auto step = s.make(ptr);
    if (!step.ok()) return step.status();
    steps_.push_back(std::move(step).value());
    labels_.push_back(s.label);
  }
  info_.weight_bytes = graph_.WeightBytes();
  for (const auto& t : owned_) info_.weight_bytes += t.nbytes();
  return Status::OK();
}

Status CpuExecutable::Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) {
  TESSERA_RETURN_IF_ERROR(CheckRunInputs(info_, inputs));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].nbytes()) std::memcpy(input_slots_[i].raw(), inputs[i].raw(), inputs[i].nbytes());
  if (!profile_) {
    for (auto& s : steps_) TESSERA_RETURN_IF_ERROR(s->Run());
  } else {
    for (size_t i = 0; i < steps_.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      TESSERA_RETURN_IF_ERROR(steps_[i]->Run());
      profile_ms_[labels_[i]] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  outputs->clear();
  for (const auto& v : output_views_) outputs->push_back(v.Clone());
  return Status::OK();
}

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  std::string name() const override { return "cpu"; }
  Result<std::unique_ptr<Executable>> Compile(const Graph& graph,
                                              const CompileOptions& options) override {
    TESSERA_ASSIGN_OR_RETURN(PreparedGraph p, PrepareGraph(graph, options));
    auto exe = std::make_unique<CpuExecutable>(options);
    TESSERA_RETURN_IF_ERROR(exe->Build(std::move(p)));
    return std::unique_ptr<Executable>(std::move(exe));
  }
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Engine> CreateCpuEngine(int threads) {
  return std::make_unique<cpu::CpuEngine>(threads);
}

void SetComputeThreadsForCurrentThread(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

int ComputeThreadsForCurrentThread() { return omp_get_max_threads(); }

std::vector<std::string> SupportedOps() { return ops::SupportedOps(); }

}  // namespace tessera
