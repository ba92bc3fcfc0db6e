#include "runtime/served_model.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <limits>
#include <thread>

#include "runtime/instance.h"
#include "tessera/core/clock.h"

namespace tessera::runtime {
namespace {

int64_t Now() { return SystemClock::Default()->NowNs(); }

std::string DimsToString(const std::vector<int64_t>& dims, bool batched) {
  std::vector<int64_t> all = dims;
  if (batched) all.insert(all.begin(), -1);
  return ShapeToString(all);
}

}  // namespace

ServedModel::ServedModel(ModelConfig config, Graph graph, int64_t version, std::string model_dir,
                         const ManagerOptions& options)
    : config_(std::move(config)),
      graph_(std::move(graph)),
      version_(version),
      model_dir_(std::move(model_dir)),
      opts_(options),
      settings_(QueueSettings::FromConfig(config_, options.max_queue)),
      stats_(config_.name, version, config_.SloMs().value_or(0)),
      queue_(settings_) {}

ServedModel::~ServedModel() { Stop(false); }

Status ServedModel::Start() {
  constants_ = std::make_shared<ConstantCache>(graph_);
  // One engine per device the instances are placed on (instance_group gpus), shared by the
  // instances there.
  const std::vector<int> placement = config_.InstanceGpus();
  std::vector<Engine*> engine_of;
  for (int listed : placement) {
    Engine* e = nullptr;
    if (auto it = engine_by_listing_.find(listed); it != engine_by_listing_.end()) e = it->second;
    if (!e) {
      std::unique_ptr<Engine> made;
      if (opts_.engine) {
        auto r = opts_.engine(config_, listed);
        if (!r.ok()) return r.status();
        made = std::move(r).value();
      } else {
        made = CreateCpuEngine(0);
      }
      for (const auto& have : engines_)
        if (have->device() == made->device() && have->name() == made->name()) e = have.get();
      if (!e) {
        engines_.push_back(std::move(made));
        e = engines_.back().get();
      }
      engine_by_listing_[listed] = e;
    }
    engine_of.push_back(e);
  }
  engine_ = engine_of.front();
  const int n = static_cast<int>(placement.size());
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads =
      opts_.threads_per_instance > 0 ? opts_.threads_per_instance : std::max(1, cores / n);
  compute_threads_.store(threads);
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    for (int i = 0; i < n; ++i) {
      instances_.push_back(std::make_unique<Instance>(this, next_index_++, engine_of[i]));
      instances_.back()->set_threads(threads);
    }
  }
  TESSERA_RETURN_IF_ERROR(AcquireSlices());
  if (engine_->name() == "cpu" && config_.SliceRequest())
    spdlog::warn(
        "model '{}': parameter {} sets a GPU slice; this CPU instance ignores it and runs {} "
        "compute thread(s) (--threads-per-instance)",
        config_.name, config_.parameters.count("slice_sms") ? "slice_sms" : "slice_percent",
        threads);
  std::vector<std::future<Status>> warm;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    for (int i = 0; i < n; ++i) {
      auto promise = std::make_shared<std::promise<Status>>();
      warm.push_back(promise->get_future());
      threads_.push_back(Launch(instances_[i].get(), promise));
    }
  }
  Status result;
  for (auto& f : warm) {
    Status st = f.get();
    if (result.ok() && !st.ok()) result = st;
  }
  if (!result.ok()) {
    Stop(false);
    return result;
  }
  weight_bytes_ = graph_.WeightBytes() + constants_->bytes();
  // (GPU models keep them: a live resize compiles again for the new slice.)
  if (opts_.warmup && !gpu() && !opts_.live_instances && Instance::ShapesFixed(*this)) {
    // Every executable this version will ever need exists now, each holding the (repacked)
    // weights it uses: the graph's own copy of the weights and the cache's anchors can go.
    for (auto& [_, t] : graph_.initializers) t = Tensor();
    graph_.initializers.clear();
    constants_.reset();
    weights_released_ = true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = true;
  }
  cv_.notify_all();
  ready_ = true;
  return Status::OK();
}

std::thread ServedModel::Launch(Instance* inst, std::shared_ptr<std::promise<Status>> warmed) {
  return std::thread([this, inst, warmed] {
    SetComputeThreadsForCurrentThread(inst->threads());
    Status st = opts_.warmup ? inst->Warmup() : Status::OK();
    const bool ok = st.ok();
    warmed->set_value(std::move(st));
    if (ok) ExecutorLoop(inst);
  });
}

void ServedModel::Stop(bool drain) {
  std::lock_guard<std::mutex> serialize(move_mu_);  // no instance added or removed meanwhile
  std::vector<RequestPtr> abandoned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    stopping_ = true;
    drain_ = drain;
    if (!drain) abandoned = queue_.TakeAll();
  }
  ready_ = false;
  cv_.notify_all();
  for (auto& r : abandoned)
    Drop(std::move(r),
         Status::Unavailable("model '" + config_.name + "' version " + std::to_string(version_) +
                             " was unloaded before this request ran"),
         RejectReason::kUnavailable);
  for (auto& t : threads_)  // (only move_mu_'s holder changes the list)
    if (t.joinable()) t.join();
  std::lock_guard<std::mutex> lock(inst_mu_);
  threads_.clear();
  for (auto& i : instances_) i->DetachGpu();  // waits for batches still on the GPU
}

Status ServedModel::AcquireSlices() {
  for (auto& inst : instances_) {
    const std::string dev = inst->engine().device();
    if (dev.rfind("cuda:", 0) != 0) continue;
    const size_t idx = std::stoul(dev.substr(5));
    GpuSlices* gpu = idx < opts_.gpus.size() ? opts_.gpus[idx].get() : nullptr;
    if (!gpu) {
      if (config_.SliceRequest())
        spdlog::warn(
            "model '{}': {} is not sliced (serve --sharing none); instance {} shares the whole "
            "GPU",
            config_.name, dev, inst->index());
      continue;
    }
    const GpuLayout& g = gpu->layout();
    int groups = 0;
    auto fail = [&](const Status& st) {
      for (auto& i : instances_) i->DetachGpu();
      return st.WithContext("model '" + config_.name + "'");
    };
    if (slice_sms_ > 0) {
      auto r = GroupsFor({slice_sms_, 0}, g, config_.name);
      if (!r.ok()) return fail(r.status());
      groups = *r;
    } else if (config_.SliceRequest()) {
      auto r = GroupsFor(*config_.SliceRequest(), g, config_.name);
      if (!r.ok()) return fail(r.status());
      groups = *r;
    }
    const std::string owner =
        fmt::format("{} v{} instance {}", config_.name, version_, inst->index());
    auto lease = gpu->Acquire(owner, groups);
    if (!lease.ok()) return fail(lease.status());
    inst->AttachGpu(gpu, *lease, opts_.completion, opts_.gpu_pipeline);
    spdlog::info("model '{}' v{} instance {}: {} ({})", config_.name, version_, inst->index(),
                 groups ? fmt::format("{} of {} SMs on GPU {}", lease->sms, g.sms, g.index)
                        : fmt::format("the whole GPU {}, unconfined (no slice_sms)", g.index),
                 gpu->kind());
  }
  return Status::OK();
}

GpuSlices* ServedModel::gpu() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  for (const auto& i : instances_)
    if (i->on_gpu()) return i->gpu();
  return nullptr;
}

std::map<std::string, size_t> ServedModel::memory_by_device() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  std::map<std::string, size_t> out;
  for (const auto& i : instances_) {
    const std::string dev = i->engine().device();
    if (!out.count(dev)) out[dev] = weight_bytes_;
    out[dev] += i->memory_bytes();
  }
  return out;
}

std::map<std::string, size_t> ServedModel::resize_bytes_by_device(int only) const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  std::map<std::string, size_t> out;
  for (const auto& i : instances_)
    if (i->on_gpu() && (only < 0 || i->index() == only))
      out[i->engine().device()] += i->memory_bytes();
  return out;
}

std::map<std::string, Engine*> ServedModel::engines_by_device() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  std::map<std::string, Engine*> out;
  for (const auto& e : engines_) out[e->device()] = e.get();
  return out;
}

std::vector<SliceLease> ServedModel::leases() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  std::vector<SliceLease> out;
  for (const auto& i : instances_)
    if (i->on_gpu()) out.push_back(i->lease());
  return out;
}

Result<ServedModel::MoveResult> ServedModel::MoveSlices(int sms) {
  std::lock_guard<std::mutex> serialize(move_mu_);
  return Move(sms, -1);
}

Result<ServedModel::MoveResult> ServedModel::Move(int sms, int only) {
  if (!gpu())
    return Status::FailedPrecondition("model '" + config_.name + "' is not on a GPU slice");
  const int64_t t0 = Now();
  std::vector<Instance*> all;  // stable: move_mu_ is held
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    for (auto& inst : instances_)
      if (only < 0 || inst->index() == only) all.push_back(inst.get());
  }
  // Phase 1: every new slice made and warmed up while the old ones serve.
  std::vector<Instance*> moving;
  std::vector<SliceLease> old;
  Status failed;
  for (Instance* inst : all) {
    if (!inst->on_gpu()) continue;
    const SliceLease was = inst->lease();
    auto groups = GroupsFor({sms, 0}, inst->gpu()->layout(), config_.name);
    if (!groups.ok()) {
      failed = groups.status();
      break;
    }
    auto n = inst->gpu()->BeginResize(was, *groups);
    if (!n.ok()) {
      failed = n.status();
      break;
    }
    moving.push_back(inst);
    old.push_back(was);
    failed = inst->PrepareMove(*n);
    if (!failed.ok()) break;
  }
  if (!failed.ok()) {
    for (size_t k = 0; k < moving.size(); ++k) {
      moving[k]->CancelMove();
      (void)moving[k]->gpu()->AbortResize(old[k]);
    }
    return failed.WithContext("model '" + config_.name + "' version " + std::to_string(version_) +
                              ": resize to " + std::to_string(sms) + " SMs (nothing was changed)");
  }
  // Phase 2: flip each instance at its next batch boundary, drain, free the old slice.
  MoveResult r;
  for (size_t k = 0; k < moving.size(); ++k) {
    TESSERA_RETURN_IF_ERROR(moving[k]->gpu()->CommitResize(old[k]));
    const Instance::MoveReport m = moving[k]->FlipAndDrain();
    TESSERA_RETURN_IF_ERROR(moving[k]->gpu()->FinishResize(old[k]));
    (void)m;
  }
  r.ms = (Now() - t0) / 1e6;
  r.gap_us = ResizeGapUs();
  if (only < 0) slice_sms_ = sms;
  return r;
}

double ServedModel::ResizeGapUs() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  double gap = -1;
  for (const auto& i : instances_)
    if (i->on_gpu()) gap = std::max(gap, i->last_flip_gap_us());
  return gap;
}

size_t ServedModel::memory_bytes() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  size_t b = weight_bytes_;
  for (const auto& i : instances_) b += i->memory_bytes();
  return b;
}

Result<std::string> ServedModel::Validate(InferenceRequest& r) const {
  const std::string where = "model '" + config_.name + "'";
  const bool batched = config_.max_batch_size > 0;
  std::string key;
  int64_t rows = -1;
  std::vector<bool> seen(config_.inputs.size(), false);
  for (size_t j = 0; j < r.input_names.size(); ++j) {
    const std::string& name = r.input_names[j];
    auto it = std::find_if(config_.inputs.begin(), config_.inputs.end(),
                           [&](const TensorConfig& t) { return t.name == name; });
    if (it == config_.inputs.end()) {
      std::string names;
      for (const auto& t : config_.inputs) names += (names.empty() ? "" : ", ") + t.name;
      return Status::InvalidArgument(where + " has no input '" + name + "'; its inputs: " + names);
    }
    const size_t ci = static_cast<size_t>(it - config_.inputs.begin());
    if (seen[ci]) return Status::InvalidArgument("input '" + name + "' is given twice");
    seen[ci] = true;
    const Tensor& t = r.inputs[j];
    if (t.dtype() != it->dtype)
      return Status::InvalidArgument(where + " input '" + name + "' must be " +
                                     DataTypeName(it->dtype) + ", got " + DataTypeName(t.dtype()));
    const Shape& s = t.shape();
    const std::string expected = DimsToString(it->dims, batched);
    if (s.size() != it->dims.size() + (batched ? 1 : 0))
      return Status::InvalidArgument(where + " input '" + name + "' must have shape " + expected +
                                     ", got " + ShapeToString(s));
    for (size_t d = 0; d < it->dims.size(); ++d) {
      const int64_t want = it->dims[d], got = s[d + (batched ? 1 : 0)];
      if ((want >= 0 && got != want) || got < 0)
        return Status::InvalidArgument(where + " input '" + name + "' must have shape " + expected +
                                       ", got " + ShapeToString(s));
    }
    if (batched) {
      if (s[0] < 1 || s[0] > config_.max_batch_size)
        return Status::InvalidArgument(where + " input '" + name + "' has batch size " +
                                       std::to_string(s[0]) + "; expected 1 to " +
                                       std::to_string(config_.max_batch_size));
      if (rows >= 0 && s[0] != rows)
        return Status::InvalidArgument(where + ": inputs disagree on the batch size (" +
                                       std::to_string(rows) + " vs " + std::to_string(s[0]) +
                                       " for '" + name + "')");
      rows = s[0];
    }
  }
  for (size_t ci = 0; ci < config_.inputs.size(); ++ci)
    if (!seen[ci])
      return Status::InvalidArgument(where + " needs input '" + config_.inputs[ci].name + "' (" +
                                     DataTypeName(config_.inputs[ci].dtype) + " " +
                                     DimsToString(config_.inputs[ci].dims, batched) +
                                     "); the request does not give it");
  for (const auto& o : r.outputs) {
    bool known = std::any_of(config_.outputs.begin(), config_.outputs.end(),
                             [&](const TensorConfig& t) { return t.name == o; });
    if (!known) {
      std::string names;
      for (const auto& t : config_.outputs) names += (names.empty() ? "" : ", ") + t.name;
      return Status::InvalidArgument(where + " has no output '" + o + "'; its outputs: " + names);
    }
  }
  // Requests batch together when every input agrees beyond the batch dim (in config order).
  for (const auto& c : config_.inputs)
    for (size_t j = 0; j < r.input_names.size(); ++j)
      if (r.input_names[j] == c.name) {
        Shape s = r.inputs[j].shape();
        if (batched) s.erase(s.begin());
        key += ShapeToString(s);
      }
  r.rows = batched ? rows : 1;
  return key;
}

Status ServedModel::Enqueue(RequestPtr& r) {
  TESSERA_ASSIGN_OR_RETURN(std::string key, Validate(*r));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_)
      return Status::Unavailable("model '" + config_.name + "' version " +
                                 std::to_string(version_) + " is not accepting requests");
    Status st = queue_.Push(r, key, Now());
    if (!st.ok()) {
      if (st.code() == StatusCode::kResourceExhausted)
        stats_.RecordReject(RejectReason::kQueueFull);
      return st;
    }
    ++in_flight_;
    stats_.SetQueueDepth(static_cast<int64_t>(queue_.size()));
  }
  cv_.notify_one();
  return Status::OK();
}

void ServedModel::Answer(RequestPtr r, InferenceResponse&& resp) {
  resp.model = config_.name;
  resp.version = version_;
  resp.id = r->id;
  resp.timing = r->timing;
  const int64_t end = Now();
  if (resp.status.ok())
    stats_.RecordSuccess(*r, end);
  else
    stats_.RecordFailure(*r, end);
  ResponseCallback done = std::move(r->done);
  r.reset();  // release the request's input buffers before answering
  if (done) done(std::move(resp));
  --in_flight_;
}

int ServedModel::batch_limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.batch_limit());
}

void ServedModel::set_batch_limit(int rows) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.SetBatchLimit(rows);
  }
  cv_.notify_all();  // a waiting batch may be full now
}

void ServedModel::Drop(RequestPtr r, Status why, RejectReason reason) {
  stats_.RecordReject(reason);
  InferenceResponse resp;
  resp.status = std::move(why);
  Answer(std::move(r), std::move(resp));
}

void ServedModel::ExecutorLoop(Instance* inst) {
  int threads = inst->threads();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (inst->retiring()) break;  // removed live: the others take the queue
    if (stopping_ && (!drain_ || queue_.empty())) break;
    if (!accepting_ && !stopping_) {  // warming up the other instances, or never started
      cv_.wait(lock);
      continue;
    }
    const int64_t now = Now();
    ModelQueue::Decision d = queue_.Next(now, estimator_, inst->batch_cap());
    stats_.SetQueueDepth(static_cast<int64_t>(queue_.size()));
    if (!d.dropped.empty()) {
      lock.unlock();
      for (size_t k = 0; k < d.dropped.size(); ++k)
        Drop(std::move(d.dropped[k].first), std::move(d.dropped[k].second), d.drop_reasons[k]);
      lock.lock();
    }
    if (d.batch.empty()) {
      if (!d.dropped.empty()) continue;
      if (stopping_ && queue_.empty()) break;
      if (d.wake_at_ns == std::numeric_limits<int64_t>::max())
        cv_.wait(lock);
      else
        cv_.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(0, d.wake_at_ns - now)));
      continue;
    }
    lock.unlock();
    if (const int want = inst->threads(); want != threads) {  // a live slice change
      SetComputeThreadsForCurrentThread(want);
      threads = want;
    }
    inst->Execute(std::move(d.batch));
    lock.lock();
  }
}

void ServedModel::set_compute_threads(int threads) {
  compute_threads_.store(threads);
  std::lock_guard<std::mutex> lock(inst_mu_);
  for (auto& i : instances_) i->set_threads(threads);
}

Instance* ServedModel::FindInstance(int index, size_t* at) const {
  for (size_t k = 0; k < instances_.size(); ++k)
    if (instances_[k]->index() == index && !instances_[k]->retiring()) {
      if (at) *at = k;
      return instances_[k].get();
    }
  return nullptr;
}

std::vector<InstanceSlice> ServedModel::instance_slices() const {
  const int model_limit = batch_limit();
  std::lock_guard<std::mutex> lock(inst_mu_);
  std::vector<InstanceSlice> out;
  for (const auto& i : instances_) {
    if (i->retiring()) continue;
    InstanceSlice v;
    v.index = i->index();
    v.threads = i->threads();
    const int64_t cap = i->batch_cap();
    v.max_batch = cap > 0 && cap < model_limit ? static_cast<int>(cap) : model_limit;
    v.own_max_batch = static_cast<int>(cap);
    if (i->on_gpu()) {
      const SliceLease l = i->lease();
      v.gpu = i->gpu()->layout().index;
      v.sms = l.sms;
      v.confined = l.id != 0;
    }
    const Instance::Counters c = i->counters();
    v.batches = c.batches;
    v.rows = c.rows;
    v.compute_ns = c.compute_ns;
    v.batch_rows = c.batch_rows;
    out.push_back(std::move(v));
  }
  return out;
}

std::map<std::string, size_t> ServedModel::add_bytes_by_device(int gpu_index) const {
  const std::string dev = gpu_index >= 0 ? "cuda:" + std::to_string(gpu_index) : engine_->device();
  std::lock_guard<std::mutex> lock(inst_mu_);
  size_t arenas = 0;
  bool holds = false;
  for (const auto& i : instances_) {
    arenas = std::max(arenas, i->memory_bytes());
    holds |= i->engine().device() == dev;
  }
  return {{dev, arenas + (holds ? 0 : weight_bytes_)}};
}

int ServedModel::next_instance_index() const {
  std::lock_guard<std::mutex> lock(inst_mu_);
  return next_index_;
}

Status CheckComputeThreads(const std::string& what, int threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads >= 1 && threads <= cores) return Status::OK();
  return Status::InvalidArgument(what + ": a CPU slice is 1 to " + std::to_string(cores) +
                                 " compute threads, got " + std::to_string(threads));
}

Status ServedModel::CheckInstanceBatchCap(int rows) const {
  if (rows >= 0 && rows <= config_.max_batch_size) return Status::OK();
  return Status::InvalidArgument(
      "model '" + config_.name + "': an instance's batch limit is 0 (the model's) to " +
      std::to_string(config_.max_batch_size) + ", got " + std::to_string(rows));
}

Status ServedModel::NoInstance(int index) const {
  std::string have;
  for (const auto& i : instances_)
    if (!i->retiring()) have += (have.empty() ? "" : ", ") + std::to_string(i->index());
  return Status::NotFound("model '" + config_.name + "' version " + std::to_string(version_) +
                          " has no instance " + std::to_string(index) + "; its instances: " + have);
}

Result<int> ServedModel::AddInstance(int size, int gpu_index, int max_batch) {
  std::lock_guard<std::mutex> serialize(move_mu_);
  const std::string where =
      "model '" + config_.name + "' version " + std::to_string(version_) + ": a new instance";
  if (!ready_) return Status::FailedPrecondition(where + ": the version is not serving");
  if (weights_released_)
    return Status::FailedPrecondition(
        where +
        " needs the graph's weights, which this CPU model freed once its executables "
        "were compiled (a server started with --live-instances or --tune keeps them)");
  TESSERA_RETURN_IF_ERROR(CheckInstanceBatchCap(max_batch));
  // Its engine: the first instance's, or the one for the GPU asked for.
  Engine* engine = engine_;
  std::unique_ptr<Engine> made;
  const bool on_cuda = engine_->device().rfind("cuda:", 0) == 0;
  if (gpu_index >= 0) {
    if (!on_cuda)
      return Status::InvalidArgument(where + " on GPU " + std::to_string(gpu_index) +
                                     ": the model runs on the " + engine_->device());
    if (!opts_.gpus.empty() && static_cast<size_t>(gpu_index) >= opts_.gpus.size())
      return Status::InvalidArgument(where + " on GPU " + std::to_string(gpu_index) +
                                     ": there is no such GPU (the server has " +
                                     std::to_string(opts_.gpus.size()) + ")");
    const std::string dev = "cuda:" + std::to_string(gpu_index);
    engine = nullptr;
    {
      std::lock_guard<std::mutex> lock(inst_mu_);
      for (auto& e : engines_)
        if (e->device() == dev) engine = e.get();
    }
    if (!engine) {
      if (!opts_.engine)
        return Status::FailedPrecondition(where + ": no engine factory for GPU " + dev);
      auto r = opts_.engine(config_, gpu_index);
      if (!r.ok()) return r.status().WithContext(where + " on " + dev);
      made = std::move(r).value();
      if (made->device() != dev)
        return Status::InvalidArgument(where + " on GPU " + std::to_string(gpu_index) +
                                       ": there is no such GPU (its engine runs on " +
                                       made->device() + ")");
      engine = made.get();
    }
  }
  auto inst = std::make_unique<Instance>(this, next_index_, engine);
  inst->set_batch_cap(max_batch);
  inst->set_threads(compute_threads_.load());
  const std::string dev = engine->device();
  if (dev.rfind("cuda:", 0) == 0) {
    const size_t idx = std::stoul(dev.substr(5));
    GpuSlices* g = idx < opts_.gpus.size() ? opts_.gpus[idx].get() : nullptr;
    if (!g)
      return Status::FailedPrecondition(where + ": " + dev +
                                        " is not sliced (serve --sharing), so there is no slice "
                                        "to give it");
    TESSERA_ASSIGN_OR_RETURN(int groups, GroupsFor({size, 0}, g->layout(), config_.name));
    const std::string owner =
        fmt::format("{} v{} instance {}", config_.name, version_, inst->index());
    auto lease = g->Acquire(owner, groups);
    if (!lease.ok()) return lease.status().WithContext(where);
    inst->AttachGpu(g, *lease, opts_.completion, opts_.gpu_pipeline);
  } else {
    TESSERA_RETURN_IF_ERROR(CheckComputeThreads(where, size));
    inst->set_threads(size);
  }
  // Warmed up on its own thread, which then takes batches from the shared queue.
  auto promise = std::make_shared<std::promise<Status>>();
  auto warmed = promise->get_future();
  std::thread t = Launch(inst.get(), promise);
  Status st = warmed.get();
  if (!st.ok()) {
    t.join();
    inst->DetachGpu();
    return st.WithContext(where + " (nothing was changed)");
  }
  const int index = inst->index();
  spdlog::info("model '{}' v{}: instance {} added ({})", config_.name, version_, index,
               inst->on_gpu()
                   ? fmt::format("{} SMs on GPU {}", inst->lease().sms, inst->gpu()->layout().index)
                   : fmt::format("{} compute thread(s)", inst->threads()));
  std::lock_guard<std::mutex> lock(inst_mu_);
  ++next_index_;
  if (made) engines_.push_back(std::move(made));
  instances_.push_back(std::move(inst));
  threads_.push_back(std::move(t));
  return index;
}

Status ServedModel::RemoveInstance(int index) {
  std::lock_guard<std::mutex> serialize(move_mu_);
  Instance* inst = nullptr;
  size_t at = 0;
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    inst = FindInstance(index, &at);
    if (!inst) return NoInstance(index);
    size_t live = 0;
    for (const auto& i : instances_) live += i->retiring() ? 0 : 1;
    if (live <= 1)
      return Status::FailedPrecondition(
          "model '" + config_.name + "' version " + std::to_string(version_) + ": instance " +
          std::to_string(index) + " is its last; unload the model instead");
    inst->set_retiring();
  }
  { std::lock_guard<std::mutex> lock(mu_); }  // its executor sees the flag before it waits
  cv_.notify_all();
  if (threads_[at].joinable()) threads_[at].join();  // the batch it ran is answered or on the GPU
  inst->DetachGpu();  // waits for its batches on the GPU, frees its slice
  spdlog::info("model '{}' v{}: instance {} removed", config_.name, version_, index);
  std::lock_guard<std::mutex> lock(inst_mu_);
  threads_.erase(threads_.begin() + static_cast<std::ptrdiff_t>(at));
  instances_.erase(instances_.begin() + static_cast<std::ptrdiff_t>(at));
  return Status::OK();
}

Result<ServedModel::MoveResult> ServedModel::ResizeInstance(int index, int size) {
  std::lock_guard<std::mutex> serialize(move_mu_);
  Instance* inst = nullptr;
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    inst = FindInstance(index, nullptr);
    if (!inst) return NoInstance(index);
  }
  if (inst->on_gpu()) return Move(size, index);
  TESSERA_RETURN_IF_ERROR(CheckComputeThreads("model '" + config_.name + "'", size));
  inst->set_threads(size);
  return MoveResult{};
}

Status ServedModel::SetInstanceBatchCap(int index, int rows) {
  TESSERA_RETURN_IF_ERROR(CheckInstanceBatchCap(rows));
  {
    std::lock_guard<std::mutex> lock(inst_mu_);
    Instance* inst = FindInstance(index, nullptr);
    if (!inst) return NoInstance(index);
    inst->set_batch_cap(rows);
  }
  cv_.notify_all();
  return Status::OK();
}

}  // namespace tessera::runtime
