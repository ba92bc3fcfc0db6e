// The CPU backend: prepared graph -> steps over one planned arena.
#include <omp.h>

#include <cstring>
#include <unordered_set>

#include "engine/cpu/steps.h"
#include "engine/prepare.h"

namespace tessera {
namespace cpu {
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

class CpuExecutable final : public Executable {
 public:
  Status Build(PreparedGraph p);
  Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) override;
  const ExecutableInfo& info() const override { return info_; }

 private:
  DnnlContext ctx_;
  ExecutableInfo info_;
  Graph graph_;  // keeps constants alive
  Tensor arena_;
  std::unordered_map<std::string, Tensor> views_;  // every non-constant value
  std::vector<Tensor> input_slots_, output_views_;
  std::vector<std::unique_ptr<Step>> steps_;
};

Status CpuExecutable::Build(PreparedGraph p) {
  DescribeIo(p, &info_);
  graph_ = std::move(p.graph);
  auto& meta = p.meta;
  const auto& nodes = graph_.nodes;
  const int n_nodes = static_cast<int>(nodes.size());

  // Aliases (Reshape family) share their source's storage: map each value to its root.
  std::unordered_map<std::string, std::string> root;
  auto root_of = [&](const std::string& v) {
    auto it = root.find(v);
    return it == root.end() ? v : it->second;
  };
  for (const auto& n : nodes) {
    const ops::OpDef* def = ops::FindOp(n.op);
    if (def->alias && !graph_.initializers.count(n.inputs[0]))
      root[n.outputs[0]] = root_of(n.inputs[0]);
  }
  // Lifetimes in node indices (graph inputs are born at -1, graph outputs live past the end).
  std::unordered_map<std::string, passes::BufferRequest> req;
  auto touch = [&](const std::string& v, int t) {
    if (v.empty() || graph_.initializers.count(v)) return;
    std::string r = root_of(v);
    auto [it, fresh] = req.try_emplace(r);
    if (fresh) {
      it->second.name = r;
      const auto& m = meta.at(r);
      it->second.bytes = static_cast<size_t>(NumElements(m.shape)) * DataTypeSize(m.dtype);
      it->second.first = t;
      it->second.last = t;
    }
    it->second.first = std::min(it->second.first, t);
    it->second.last = std::max(it->second.last, t);
  };
  for (const auto& in : graph_.inputs) touch(in.name, -1);
  for (int i = 0; i < n_nodes; ++i) {
    for (const auto& v : nodes[i].inputs) touch(v, i);
    for (const auto& v : nodes[i].outputs) touch(v, i);
  }
  for (const auto& o : graph_.outputs) touch(o.name, n_nodes);
  std::vector<passes::BufferRequest> reqs;
  for (auto& [_, r] : req) reqs.push_back(r);
  passes::MemoryPlan plan = passes::PlanMemory(reqs);
  info_.activation_bytes = plan.arena_bytes;
  info_.activation_bytes_no_reuse = plan.naive_bytes;
  arena_ = Tensor::Allocate(DataType::kUInt8, {static_cast<int64_t>(plan.arena_bytes)});

  auto view = [&](const std::string& v) -> Tensor {
    if (v.empty()) return Tensor();
    auto c = graph_.initializers.find(v);
    if (c != graph_.initializers.end()) return c->second;
    const auto& m = meta.at(v);
    return Tensor::View(m.dtype, m.shape, arena_.data<uint8_t>() + plan.offsets.at(root_of(v)));
  };
  for (const auto& in : graph_.inputs) input_slots_.push_back(view(in.name));
  for (const auto& o : graph_.outputs) output_views_.push_back(view(o.name));

  for (const auto& n : nodes) {
    const ops::OpDef* def = ops::FindOp(n.op);
    std::vector<Tensor> in, out;
    for (const auto& v : n.inputs) in.push_back(view(v));
    for (const auto& v : n.outputs) out.push_back(view(v));
    if (def->alias) continue;  // storage shared; nothing to run
    Result<std::unique_ptr<Step>> step = Status::Internal("unset");
    if (n.op == "Conv") step = MakeConvStep(&ctx_, n, in, out[0]);
    else if (n.op == "MatMul") step = MakeMatMulStep(&ctx_, n, in, out[0]);
    else if (n.op == "Gemm")
      step = MakeGemmStep(&ctx_, n, in, in.size() > 2 && graph_.initializers.count(n.inputs[2]), out[0]);
    else if (n.op == "MaxPool" || n.op == "AveragePool") step = MakePoolStep(&ctx_, n, in[0], out[0]);
    else if (def->kernel)
      step = std::unique_ptr<Step>(std::make_unique<KernelStep>(n, def, in, out));
    else
      return Status::Unimplemented(n.Describe() + " has no CPU implementation");
    if (!step.ok()) return step.status();
    info_.weight_bytes += (*step)->OwnedBytes();
    steps_.push_back(std::move(step).value());
  }
  info_.weight_bytes += graph_.WeightBytes();
  return Status::OK();
}

Status CpuExecutable::Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) {
  TESSERA_RETURN_IF_ERROR(CheckRunInputs(info_, inputs));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].nbytes()) std::memcpy(input_slots_[i].raw(), inputs[i].raw(), inputs[i].nbytes());
  for (auto& s : steps_) TESSERA_RETURN_IF_ERROR(s->Run());
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
    auto exe = std::make_unique<CpuExecutable>();
    TESSERA_RETURN_IF_ERROR(exe->Build(std::move(p)));
    return std::unique_ptr<Executable>(std::move(exe));
  }
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Engine> CreateCpuEngine(int threads) {
  return std::make_unique<cpu::CpuEngine>(threads);
}

std::vector<std::string> SupportedOps() { return ops::SupportedOps(); }

}  // namespace tessera
