// A model instance on a GPU slice: executables compiled for the slice and bound to its stream,
// batches gathered straight into pinned buffers and run through the GPU's data path, completion
// by the configured mode, and live moves to another slice, make before break.
//
// Executables live in generations, one per place the instance has run on. The executor takes
// the current generation at the start of each batch, so a flip (FlipAndDrain) takes effect at a
// batch boundary; batches already on the old generation finish there, and the old generation is
// freed once its last batch is answered. Each batch shape has up to `pipeline_` copies of its
// executable (one run at a time each), so the next batch's input copy can overlap this one's
// compute; a batch waits for a free copy.
#include <spdlog/spdlog.h>

#include <cstring>

#include "runtime/batch_io.h"
#include "runtime/instance.h"
#include "runtime/served_model.h"
#include "tessera/core/clock.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera::runtime {
namespace {

constexpr size_t kMaxGpuShapes = 32;  // per generation; least recently used idle ones go

int64_t Now() { return SystemClock::Default()->NowNs(); }

}  // namespace

// One executable with its pinned buffers.
struct Instance::GpuCopy {
  PinnedPool* pool = nullptr;
  std::unique_ptr<Executable> exe;
  GpuExecutable* gexe = nullptr;
  std::vector<void*> in, out;
  int32_t* err = nullptr;
  size_t bytes = 0;  // device memory: the activation arena and workspace (not the pinned buffers)
  bool busy = false;
  // How a finished batch on this copy ended (`st`: the GPU work's status, then the error word a
  // Gather sets for an index outside its data) and, when it succeeded, its outputs copied out of
  // the pinned buffers, with their specs.
  Status TakeOutputs(Status st, std::vector<Tensor>* outs, std::vector<TensorSpec>* specs) const {
    if (st.ok() && *err != 0)
      st = Status::InvalidArgument(
          "an index in the input is out of range (a Gather met an index outside its data)");
    if (!st.ok()) return st;
    for (size_t o = 0; o < out.size(); ++o) {
      const auto& spec = gexe->device_outputs()[o].spec;
      Tensor t = Tensor::Allocate(spec.dtype, spec.shape);
      std::memcpy(t.raw(), out[o], t.nbytes());
      outs->push_back(std::move(t));
      if (specs) specs->push_back(spec);
    }
    return st;
  }
  ~GpuCopy() {
    exe.reset();  // waits for its stream before the buffers are reused
    for (void* p : in) pool->Put(p);
    for (void* p : out) pool->Put(p);
    pool->Put(err);
  }
};

struct Instance::GpuShape {
  int64_t rows = 0;
  std::vector<Shape> items;
  std::vector<std::unique_ptr<GpuCopy>> copies;
  int64_t last_use = 0;
};

struct Instance::GpuGeneration {
  SliceLease lease;
  std::map<std::string, GpuShape> shapes;
  int users = 0;  // batches (and compiles) using it and not yet done
  size_t bytes = 0;
  int64_t tick = 0;
  int64_t first_submit_ns = 0, last_done_ns = 0;
  int64_t first_ready_ns = 0;  // when the first batch's oldest request was queued
};

void Instance::AttachGpu(GpuSlices* gpu, SliceLease lease, Completion how, int pipeline) {
  gpu_ = gpu;
  completion_ = how;
  pipeline_ = std::max(1, pipeline);
  lease_ = lease;
  cur_ = std::make_shared<GpuGeneration>();
  cur_->lease = lease;
}

SliceLease Instance::lease() const {
  std::lock_guard<std::mutex> lock(gmu_);
  return lease_;
}

Result<std::unique_ptr<Instance::GpuCopy>> Instance::CompileForGpu(
    const GpuGeneration& gen, int64_t rows, const std::vector<Shape>& item_shapes) {
  CompileOptions o = OptionsFor(rows, item_shapes);
  o.sm_count_target = gen.lease.sms;
  auto exe = engine_->Compile(model_->graph(), o);
  if (!exe.ok())
    return exe.status().WithContext("model '" + model_->name() + "': compiling for batch " +
                                    std::to_string(rows) + " on a " +
                                    std::to_string(gen.lease.sms) + "-SM slice");
  auto c = std::make_unique<GpuCopy>();
  c->pool = &gpu_->pinned();
  c->exe = std::move(exe).value();
  c->gexe = dynamic_cast<GpuExecutable*>(c->exe.get());
  if (!c->gexe)
    return Status::Internal("model '" + model_->name() + "': the " + engine_->name() +
                            " engine gave an executable the GPU data path cannot run");
  TESSERA_RETURN_IF_ERROR(gpu_->device().Bind(gen.lease.place, c->gexe));
  c->bytes = c->exe->info().activation_bytes;
  for (const auto& s : c->gexe->device_inputs()) {
    TESSERA_ASSIGN_OR_RETURN(void* p, c->pool->Get(s.bytes));
    c->in.push_back(p);
  }
  for (const auto& s : c->gexe->device_outputs()) {
    TESSERA_ASSIGN_OR_RETURN(void* p, c->pool->Get(s.bytes));
    c->out.push_back(p);
  }
  TESSERA_ASSIGN_OR_RETURN(void* e, c->pool->Get(sizeof(int32_t)));
  c->err = static_cast<int32_t*>(e);
  return c;
}

Result<std::pair<std::shared_ptr<Instance::GpuGeneration>, Instance::GpuCopy*>>
Instance::AcquireGpuCopy(int64_t rows, const std::vector<Shape>& item_shapes, int64_t ready_ns) {
  const std::string key = ExecutableKey(rows, item_shapes);
  std::unique_lock<std::mutex> lock(gmu_);
  for (;;) {
    std::shared_ptr<GpuGeneration> gen = cur_;
    auto [it, fresh] = gen->shapes.try_emplace(key);
    GpuShape& sh = it->second;
    if (fresh) {
      sh.rows = rows;
      sh.items = item_shapes;
    }
    sh.last_use = ++gen->tick;
    for (auto& c : sh.copies)
      if (!c->busy) {
        c->busy = true;
        ++gen->users;
        if (!gen->first_submit_ns) {
          gen->first_submit_ns = Now();
          gen->first_ready_ns = ready_ns;
        }
        return std::make_pair(gen, c.get());
      }
    if (static_cast<int>(sh.copies.size()) < pipeline_) {
      if (model_->weights_released())
        return Status::Internal("model '" + model_->name() + "': no executable for batch " +
                                std::to_string(rows) + " and shapes " + key +
                                ", and the weights were released after warm-up");
      ++gen->users;  // a compile holds the generation like a batch does
      lock.unlock();
      auto c = CompileForGpu(*gen, rows, item_shapes);
      lock.lock();
      --gen->users;
      gcv_.notify_all();
      if (!c.ok()) return c.status();
      gen->bytes += (*c)->bytes;
      gpu_arena_bytes_ += (*c)->bytes;
      gen->shapes[key].copies.push_back(std::move(c).value());
      // Drop the least recently used idle shapes past the limit.
      while (gen->shapes.size() > kMaxGpuShapes) {
        auto victim = gen->shapes.end();
        for (auto s = gen->shapes.begin(); s != gen->shapes.end(); ++s) {
          const bool idle = std::none_of(s->second.copies.begin(), s->second.copies.end(),
                                         [](const auto& c) { return c->busy; });
          if (s->first != key && idle &&
              (victim == gen->shapes.end() || s->second.last_use < victim->second.last_use))
            victim = s;
        }
        if (victim == gen->shapes.end()) break;
        for (const auto& c : victim->second.copies) {
          gen->bytes -= c->bytes;
          gpu_arena_bytes_ -= c->bytes;
        }
        gen->shapes.erase(victim);
      }
      continue;
    }
    gcv_.wait(lock);  // every copy is running a batch: the pipeline is full
  }
}

void Instance::ReleaseGpuCopy(GpuCopy* copy) {
  {
    std::lock_guard<std::mutex> lock(gmu_);
    copy->busy = false;
  }
  gcv_.notify_all();
}

void Instance::FinishGpuBatch(GpuGeneration* gen, int64_t done_ns) {
  // Notified under the lock: once a waiter (DetachGpu, FlipAndDrain) sees no users it may free
  // this instance, so nothing here may touch it after the lock is released.
  std::lock_guard<std::mutex> lock(gmu_);
  --gen->users;
  gen->last_done_ns = std::max(gen->last_done_ns, done_ns);
  gcv_.notify_all();
}

Result<std::vector<Tensor>> Instance::RunOnceOnGpu(int64_t rows,
                                                   const std::vector<Tensor>& inputs) {
  std::vector<Shape> items;
  for (const auto& t : inputs) {
    Shape s = t.shape();
    if (model_->config().max_batch_size > 0) s.erase(s.begin());
    items.push_back(s);
  }
  TESSERA_ASSIGN_OR_RETURN(auto acquired, AcquireGpuCopy(rows, items, 0));
  auto [gen, copy] = acquired;
  const auto& slots = copy->gexe->device_inputs();
  for (size_t i = 0; i < inputs.size() && i < slots.size(); ++i)
    std::memcpy(copy->in[i], inputs[i].raw(), std::min(slots[i].bytes, inputs[i].nbytes()));
  GpuDevice::Batch b{gen->lease.place, copy->gexe, {}, copy->out, copy->err};
  for (void* p : copy->in) b.inputs.push_back(p);
  Status result;
  Status st = gpu_->device().Submit(b, Completion::kSync, [&](Status s) { result = s; });
  if (st.ok()) st = result;
  std::vector<Tensor> outs;
  st = copy->TakeOutputs(st, &outs, nullptr);
  ReleaseGpuCopy(copy);
  FinishGpuBatch(gen.get(), Now());
  if (!st.ok()) return st.WithContext("model '" + model_->name() + "'");
  return outs;
}

void Instance::ExecuteOnGpu(std::vector<RequestPtr> batch) {
  struct InFlight {
    std::vector<RequestPtr> batch;
    BatchLayout layout;
    std::shared_ptr<GpuGeneration> gen;
    GpuCopy* copy = nullptr;
    int64_t t_dispatch = 0, t_input = 0;
  };
  auto f = std::make_shared<InFlight>();
  f->batch = std::move(batch);
  f->t_dispatch = Now();
  for (auto& r : f->batch) r->timing.dispatch = f->t_dispatch;
  ServedModel* model = model_;
  auto fail_all = [model](std::vector<RequestPtr>& b, const Status& st) {
    for (auto& r : b) {
      InferenceResponse resp;
      resp.status = st;
      model->Answer(std::move(r), std::move(resp));
    }
  };
  auto layout = LayoutBatch(*model_, f->batch);
  if (!layout.ok()) return fail_all(f->batch, layout.status());
  f->layout = std::move(layout).value();
  int64_t ready = f->t_dispatch;
  for (const auto& r : f->batch)
    if (r->timing.enqueue > 0) ready = std::min(ready, r->timing.enqueue);
  auto acquired = AcquireGpuCopy(f->layout.bucket, f->layout.items, ready);
  if (!acquired.ok()) return fail_all(f->batch, acquired.status());
  std::tie(f->gen, f->copy) = *acquired;
  // The batch's inputs in pinned memory: one request that fills its bucket is read where it is
  // when that is pinned already (a registered shared-memory region: DMA with no copy here), or
  // copied once; several requests are gathered row after row into the copy's buffers.
  std::vector<const void*> src(f->copy->in.begin(), f->copy->in.end());
  const InferenceRequest& first = *f->batch.front();
  if (f->batch.size() == 1 && (!f->layout.batched || first.rows == f->layout.bucket)) {
    for (size_t i = 0; i < src.size(); ++i) {
      const Tensor& t = first.inputs[f->layout.index[0][i]];
      if (gpu_->device().IsPinned(t.raw(), t.nbytes()))
        src[i] = t.raw();
      else
        std::memcpy(f->copy->in[i], t.raw(), t.nbytes());
    }
  } else {
    std::vector<uint8_t*> dst;
    for (void* p : f->copy->in) dst.push_back(static_cast<uint8_t*>(p));
    GatherInputs(f->layout, f->batch, dst);
  }
  f->t_input = Now();

  auto complete = [this, f, fail_all](Status st) {
    const int64_t t_infer = Now();
    // The batch counts on its generation until every answer is out (the last thing done here).
    struct Finish {
      Instance* inst;
      GpuGeneration* gen;
      int64_t t;
      ~Finish() { inst->FinishGpuBatch(gen, t); }
    } finish{this, f->gen.get(), t_infer};
    GpuCopy* c = f->copy;
    std::vector<Tensor> outs;
    std::vector<TensorSpec> specs;
    st = c->TakeOutputs(st, &outs, &specs);
    ReleaseGpuCopy(c);  // its buffers are copied out: free for the next batch
    if (!st.ok()) return fail_all(f->batch, st.WithContext("model '" + model_->name() + "'"));
    const BatchLayout& l = f->layout;
    model_->estimator().Record(l.bucket, t_infer - f->t_input);
    auto responses = CutOutputs(*model_, l, f->batch, outs, specs);
    if (!responses.ok()) return fail_all(f->batch, responses.status());
    const int64_t t_output = Now();
    RecordExecution(l.rows, f->t_input - f->t_dispatch, t_infer - f->t_input, t_output - t_infer);
    for (size_t k = 0; k < f->batch.size(); ++k) {
      f->batch[k]->timing.input_done = f->t_input;
      f->batch[k]->timing.infer_done = t_infer;
      f->batch[k]->timing.output_done = t_output;
      (*responses)[k].gpu_sms = f->gen->lease.sms;
      model_->Answer(std::move(f->batch[k]), std::move((*responses)[k]));
    }
  };
  GpuDevice::Batch b{f->gen->lease.place, f->copy->gexe, src, f->copy->out, f->copy->err};
  Status st = gpu_->device().Submit(b, completion_, complete);
  if (!st.ok()) {
    ReleaseGpuCopy(f->copy);
    fail_all(f->batch, st.WithContext("model '" + model_->name() + "'"));
    FinishGpuBatch(f->gen.get(), Now());
  }
}

Status Instance::PrepareMove(const SliceLease& next) {
  auto gen = std::make_shared<GpuGeneration>();
  gen->lease = next;
  struct Want {
    std::string key;
    int64_t rows;
    std::vector<Shape> items;
    size_t copies;
  };
  std::vector<Want> want;
  {
    std::lock_guard<std::mutex> lock(gmu_);
    if (pending_ || draining_)
      return Status::FailedPrecondition("model '" + model_->name() +
                                        "': a slice move is already in progress");
    for (const auto& [key, sh] : cur_->shapes)
      want.push_back({key, sh.rows, sh.items, std::max<size_t>(1, sh.copies.size())});
  }
  // Everything compiled and run once on the new place while the old one keeps serving.
  for (const auto& w : want) {
    for (size_t k = 0; k < w.copies; ++k) {
      TESSERA_ASSIGN_OR_RETURN(auto c, CompileForGpu(*gen, w.rows, w.items));
      const auto& slots = c->gexe->device_inputs();
      for (size_t i = 0; i < slots.size(); ++i) std::memset(c->in[i], 0, slots[i].bytes);
      GpuDevice::Batch b{next.place, c->gexe, {}, c->out, c->err};
      for (void* p : c->in) b.inputs.push_back(p);
      Status result;
      Status st = gpu_->device().Submit(b, Completion::kSync, [&](Status s) { result = s; });
      if (st.ok()) st = result;
      if (!st.ok())
        return st.WithContext("model '" + model_->name() + "': warm-up on the new slice");
      gen->bytes += c->bytes;
      auto& sh = gen->shapes[w.key];
      sh.rows = w.rows;
      sh.items = w.items;
      sh.copies.push_back(std::move(c));
    }
  }
  gpu_arena_bytes_ += gen->bytes;
  std::lock_guard<std::mutex> lock(gmu_);
  pending_ = std::move(gen);
  return Status::OK();
}

void Instance::CancelMove() {
  std::shared_ptr<GpuGeneration> gone;
  {
    std::lock_guard<std::mutex> lock(gmu_);
    gone = std::move(pending_);
  }
  if (gone) gpu_arena_bytes_ -= gone->bytes;
}

Instance::MoveReport Instance::FlipAndDrain() {
  MoveReport r;
  std::shared_ptr<GpuGeneration> old;
  {
    std::unique_lock<std::mutex> lock(gmu_);
    if (!pending_) return r;
    draining_ = cur_;
    cur_ = std::move(pending_);
    lease_ = cur_->lease;
    r.flip_ns = Now();
    gcv_.notify_all();  // an executor waiting for a free copy takes the new generation
    gcv_.wait(lock, [&] { return draining_->users == 0; });
    r.old_last_done_ns = draining_->last_done_ns;
    r.drained_ns = Now();
    flip_old_last_done_ns_ = r.old_last_done_ns;
    old = std::move(draining_);
  }
  gpu_arena_bytes_ -= old->bytes;
  // The old executables go now, while their place still exists (a finished batch may still
  // hold the generation itself for a moment, not its executables).
  std::map<std::string, GpuShape> gone;
  {
    std::lock_guard<std::mutex> lock(gmu_);
    gone.swap(old->shapes);
  }
  gone.clear();
  return r;
}

double Instance::last_flip_gap_us() const {
  std::lock_guard<std::mutex> lock(gmu_);
  if (!cur_ || !flip_old_last_done_ns_ || !cur_->first_submit_ns) return -1;
  // Time the first batch on the new place waited because of the move: from when the old place
  // was done (or the batch's oldest request arrived, if later) to its submission. Idle time with
  // nothing queued is not a gap.
  const int64_t from = std::max(flip_old_last_done_ns_, cur_->first_ready_ns);
  return std::max<int64_t>(0, cur_->first_submit_ns - from) / 1e3;
}

void Instance::DetachGpu() {
  if (!gpu_) return;
  std::shared_ptr<GpuGeneration> a, b;
  {
    std::unique_lock<std::mutex> lock(gmu_);
    gcv_.wait(lock, [&] { return !cur_ || cur_->users == 0; });
    a = std::move(cur_);
    b = std::move(pending_);
  }
  std::map<std::string, GpuShape> gone;
  {
    std::lock_guard<std::mutex> lock(gmu_);
    if (a) gone.swap(a->shapes);
  }
  gone.clear();
  a.reset();
  b.reset();
  gpu_arena_bytes_ = 0;
  gpu_->Release(lease_);
  gpu_ = nullptr;
}

}  // namespace tessera::runtime
