#include "runtime/instance.h"

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/batch_io.h"
#include "runtime/served_model.h"
#include "tessera/core/clock.h"

namespace tessera::runtime {
namespace {

constexpr size_t kMaxExecutables = 32;  // per instance; least recently used ones are dropped

int64_t Now() { return SystemClock::Default()->NowNs(); }

bool Batched(const ServedModel& m) { return m.config().max_batch_size > 0; }

// The per-row (item) shape of every graph input from the config, or false when a dim varies.
bool FixedItemShapes(const ServedModel& m, std::vector<Shape>* out) {
  for (const auto& in : m.graph().inputs) {
    const TensorConfig* tc = nullptr;
    for (const auto& c : m.config().inputs)
      if (c.name == in.name) tc = &c;
    if (!tc) return false;
    for (int64_t d : tc->dims)
      if (d < 0) return false;
    out->push_back(Shape(tc->dims.begin(), tc->dims.end()));
  }
  return true;
}

Tensor FilledInput(DataType dtype, Shape shape, bool random, std::mt19937* rng) {
  Tensor t = Tensor::Allocate(dtype, std::move(shape));
  if (!random) return t;
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (dtype) {
      case DataType::kFloat32:
        t.data<float>()[i] = std::uniform_real_distribution<float>(0, 1)(*rng);
        break;
      case DataType::kFloat64:
        t.data<double>()[i] = std::uniform_real_distribution<double>(0, 1)(*rng);
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = (*rng)() % 2;
        break;
      case DataType::kInt32:
        t.data<int32_t>()[i] = static_cast<int32_t>((*rng)() % 2);
        break;
      default:  // other types: zeros
        break;
    }
  }
  return t;
}

}  // namespace

CompileOptions Instance::OptionsFor(int64_t rows, const std::vector<Shape>& item_shapes) const {
  const Graph& g = model_->graph();
  CompileOptions o;
  o.batch = Batched(*model_) ? rows : 1;
  o.constants = model_->constants();
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    Shape full = item_shapes[i];
    if (Batched(*model_)) full.insert(full.begin(), rows);
    o.input_shapes[g.inputs[i].name] = full;
  }
  return o;
}

Result<Executable*> Instance::ExecutableFor(int64_t rows, const std::vector<Shape>& item_shapes) {
  const std::string key = ExecutableKey(rows, item_shapes);
  auto it = exes_.find(key);
  if (it != exes_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.exe.get();
  }
  const Graph& g = model_->graph();
  if (model_->weights_released())
    return Status::Internal("model '" + model_->name() + "': no executable for batch " +
                            std::to_string(rows) + " and shapes " + key +
                            ", and the weights were released after warm-up");
  auto exe = engine_->Compile(g, OptionsFor(rows, item_shapes));
  if (!exe.ok())
    return exe.status().WithContext("model '" + model_->name() + "': compiling for batch " +
                                    std::to_string(rows));
  lru_.push_front(key);
  auto& slot = exes_[key];
  slot.exe = std::move(exe).value();
  slot.lru = lru_.begin();
  arena_bytes_ += slot.exe->info().activation_bytes;
  while (exes_.size() > kMaxExecutables) {
    auto victim = exes_.find(lru_.back());
    arena_bytes_ -= victim->second.exe->info().activation_bytes;
    exes_.erase(victim);
    lru_.pop_back();
  }
  return slot.exe.get();
}

Result<std::vector<Tensor>> Instance::RunOnce(int64_t rows, std::vector<Tensor> inputs) {
  if (gpu_) return RunOnceOnGpu(rows, inputs);
  std::vector<Shape> items;
  for (const auto& t : inputs) {
    Shape s = t.shape();
    if (Batched(*model_)) s.erase(s.begin());
    items.push_back(s);
  }
  TESSERA_ASSIGN_OR_RETURN(Executable * exe, ExecutableFor(rows, items));
  std::vector<Tensor> outs;
  TESSERA_RETURN_IF_ERROR(exe->Run(inputs, &outs));
  return outs;
}

Status Instance::Warmup() {
  std::vector<Shape> items;
  if (FixedItemShapes(*model_, &items)) {
    const auto& g = model_->graph();
    for (int64_t b : model_->settings().buckets) {
      std::vector<Tensor> in;
      for (size_t i = 0; i < g.inputs.size(); ++i) {
        Shape s = items[i];
        if (Batched(*model_)) s.insert(s.begin(), b);
        in.push_back(Tensor::Allocate(g.inputs[i].dtype, s));
      }
      // Twice: the first run pays for first-touch page faults; the second is the estimate.
      TESSERA_RETURN_IF_ERROR(RunOnce(b, in).status());
      const int64_t t0 = Now();
      TESSERA_RETURN_IF_ERROR(RunOnce(b, in).status());
      model_->estimator().Record(b, Now() - t0);
    }
  }
  return WarmupSamples();
}

Status Instance::WarmupSamples() {
  std::mt19937 rng(1234);
  const auto& g = model_->graph();
  for (const auto& w : model_->config().warmup) {
    const std::string where = "model '" + model_->name() + "' warm-up '" + w.name + "'";
    std::vector<Tensor> in;
    for (const auto& gi : g.inputs) {
      auto it = w.inputs.find(gi.name);
      if (it == w.inputs.end())
        return Status::InvalidArgument(where + " gives no data for input '" + gi.name + "'");
      Shape s(it->second.dims.begin(), it->second.dims.end());
      if (Batched(*model_)) s.insert(s.begin(), w.batch_size);
      Tensor t = FilledInput(it->second.dtype, s, it->second.random, &rng);
      if (!it->second.data_file.empty()) {
        const std::string path = model_->model_dir() + "/warmup/" + it->second.data_file;
        std::ifstream f(path, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        const std::string bytes = ss.str();
        if (!f || bytes.size() != t.nbytes())
          return Status::InvalidArgument(where + ": input_data_file '" + path + "' must hold " +
                                         std::to_string(t.nbytes()) + " bytes, has " +
                                         std::to_string(bytes.size()));
        std::memcpy(t.raw(), bytes.data(), bytes.size());
      }
      in.push_back(t);
    }
    const int64_t bucket = Batched(*model_) ? model_->settings().BucketFor(w.batch_size) : 1;
    for (int k = 0; k < w.count; ++k) {
      std::vector<Tensor> padded = in;
      if (bucket != w.batch_size)
        for (auto& t : padded) {
          Shape s = t.shape();
          s[0] = bucket;
          Tensor p = Tensor::Allocate(t.dtype(), s);
          std::memcpy(p.raw(), t.raw(), t.nbytes());
          t = p;
        }
      auto r = RunOnce(bucket, padded);
      if (!r.ok()) return r.status().WithContext(where);
    }
  }
  return Status::OK();
}

void Instance::Execute(std::vector<RequestPtr> batch) {
  if (gpu_) return ExecuteOnGpu(std::move(batch));
  const int64_t t_dispatch = Now();
  for (auto& r : batch) r->timing.dispatch = t_dispatch;
  auto fail_all = [&](const Status& st) {
    for (auto& r : batch) {
      InferenceResponse resp;
      resp.status = st;
      model_->Answer(std::move(r), std::move(resp));
    }
  };
  auto layout = LayoutBatch(*model_, batch);
  if (!layout.ok()) return fail_all(layout.status());
  const BatchLayout& l = *layout;
  auto exe = ExecutableFor(l.bucket, l.items);
  if (!exe.ok()) return fail_all(exe.status());

  const InferenceRequest& first = *batch.front();
  std::vector<Tensor> inputs;
  if (batch.size() == 1 && (!l.batched || first.rows == l.bucket)) {
    for (size_t i = 0; i < l.items.size(); ++i) inputs.push_back(first.inputs[l.index[0][i]]);
  } else {
    std::vector<uint8_t*> dst;
    for (size_t i = 0; i < l.items.size(); ++i) {
      Shape s = l.items[i];
      s.insert(s.begin(), l.bucket);
      inputs.push_back(Tensor::Allocate(first.inputs[l.index[0][i]].dtype(), s));
      dst.push_back(inputs.back().data<uint8_t>());
    }
    GatherInputs(l, batch, dst);
  }
  const int64_t t_input = Now();
  const int compute_threads = ComputeThreadsForCurrentThread();
  std::vector<Tensor> outs;
  Status st = (*exe)->Run(inputs, &outs);
  const int64_t t_infer = Now();
  if (!st.ok()) return fail_all(st.WithContext("model '" + model_->name() + "'"));
  model_->estimator().Record(l.bucket, t_infer - t_input);
  auto responses = CutOutputs(*model_, l, batch, outs, (*exe)->info().outputs);
  if (!responses.ok()) return fail_all(responses.status());
  const int64_t t_output = Now();
  RecordExecution(l.rows, t_input - t_dispatch, t_infer - t_input, t_output - t_infer);
  for (size_t k = 0; k < batch.size(); ++k) {
    batch[k]->timing.input_done = t_input;
    batch[k]->timing.infer_done = t_infer;
    batch[k]->timing.output_done = t_output;
    (*responses)[k].compute_threads = compute_threads;
    model_->Answer(std::move(batch[k]), std::move((*responses)[k]));
  }
}

void Instance::RecordExecution(int64_t rows, int64_t input_ns, int64_t infer_ns,
                               int64_t output_ns) {
  model_->mutable_stats().RecordExecution(rows, input_ns, infer_ns, output_ns);
  std::lock_guard<std::mutex> lock(count_mu_);
  ++counters_.batches;
  counters_.rows += static_cast<uint64_t>(rows);
  counters_.compute_ns += double(std::max<int64_t>(0, input_ns) + std::max<int64_t>(0, infer_ns) +
                                 std::max<int64_t>(0, output_ns));
  ++counters_.batch_rows[static_cast<uint64_t>(rows)];
}

Instance::Counters Instance::counters() const {
  std::lock_guard<std::mutex> lock(count_mu_);
  return counters_;
}

size_t Instance::memory_bytes() const { return arena_bytes_.load() + gpu_arena_bytes_.load(); }

bool Instance::ShapesFixed(const ServedModel& m) {
  std::vector<Shape> items;
  return FixedItemShapes(m, &items);
}

}  // namespace tessera::runtime
