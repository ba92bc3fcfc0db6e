// GPU serving without a GPU: the runtime's GPU path (slices per instance, the data path, the three
// completion modes, live make-before-break resize, pinned buffers) against a fake GPU whose
// "device memory" is host memory and whose kernels are the CPU engine. What only a GPU can show
// (SM confinement, copy-engine overlap, the real gap) is in tests/gpu and bench/.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "fake_slice_provider.h"
#include "server/metrics.h"
#include "tessera/core/clock.h"
#include "tessera/engine/cuda_engine.h"
#include "tessera/runtime/gpu.h"
#include "tessera/runtime/model_manager.h"
#include "tessera/zoo/zoo.h"

namespace tessera {
namespace {
namespace fs = std::filesystem;
using runtime::Completion;
using runtime::GpuDevice;
using runtime::GpuLayout;

// What the fake GPU saw, for the tests to check.
struct Observed {
  std::mutex mu;
  std::vector<int> sm_targets;        // of every compile
  std::atomic<int> runs{0};           // batches run
  std::atomic<int> on_dead_place{0};  // batches that found their place destroyed
  std::atomic<int> unbound{0};        // enqueues on a stream the executable is not bound to
  std::atomic<int64_t> host_allocs{0}, host_frees{0};
  std::atomic<bool> gather_fault{false};  // the next run reports an out-of-range index
  std::atomic<int> direct_inputs{0};      // inputs copied straight from pinned request memory
  std::atomic<int64_t> gpu_memory{0};     // the fake GPUs' memory budget (0: none)
};

class FakeGpuExecutable final : public GpuExecutable {
 public:
  FakeGpuExecutable(std::unique_ptr<Executable> inner, Observed* seen)
      : inner_(std::move(inner)), seen_(seen) {
    for (const auto& s : inner_->info().inputs) {
      in_mem_.push_back(Tensor::Allocate(s.dtype, s.shape));
      in_.push_back({s, in_mem_.back().raw(), in_mem_.back().nbytes()});
    }
    for (const auto& s : inner_->info().outputs) {
      out_mem_.push_back(Tensor::Allocate(s.dtype, s.shape));
      out_.push_back({s, out_mem_.back().raw(), out_mem_.back().nbytes()});
    }
  }
  Status Run(const std::vector<Tensor>& in, std::vector<Tensor>* out) override {
    return inner_->Run(in, out);
  }
  const ExecutableInfo& info() const override { return inner_->info(); }
  const std::vector<DeviceSlot>& device_inputs() const override { return in_; }
  const std::vector<DeviceSlot>& device_outputs() const override { return out_; }
  const void* device_error_word() const override { return &err_; }
  Status Bind(void* stream) override {
    bound_ = stream;
    return Status::OK();
  }
  Status Enqueue(void* stream) override {
    if (stream != bound_) ++seen_->unbound;
    err_ = seen_->gather_fault.exchange(false) ? 1 : 0;
    std::vector<Tensor> outs;
    TESSERA_RETURN_IF_ERROR(inner_->Run(in_mem_, &outs));
    for (size_t o = 0; o < outs.size(); ++o)
      std::memcpy(out_mem_[o].raw(), outs[o].raw(), outs[o].nbytes());
    return Status::OK();
  }

 private:
  std::unique_ptr<Executable> inner_;
  Observed* seen_;
  std::vector<Tensor> in_mem_, out_mem_;
  std::vector<DeviceSlot> in_, out_;
  void* bound_ = nullptr;
  int32_t err_ = 0;
};

class FakeGpuEngine final : public Engine {
 public:
  FakeGpuEngine(Observed* seen, int gpu) : cpu_(CreateCpuEngine(1)), seen_(seen), gpu_(gpu) {}
  std::string name() const override { return "cuda"; }
  std::string device() const override { return "cuda:" + std::to_string(gpu_); }
  int64_t memory_capacity_bytes() const override { return seen_->gpu_memory.load(); }
  Result<std::unique_ptr<Executable>> Compile(const Graph& g, const CompileOptions& o) override {
    {
      std::lock_guard<std::mutex> lock(seen_->mu);
      seen_->sm_targets.push_back(o.sm_count_target);
    }
    TESSERA_ASSIGN_OR_RETURN(auto inner, cpu_->Compile(g, o));
    return std::unique_ptr<Executable>(
        std::make_unique<FakeGpuExecutable>(std::move(inner), seen_));
  }

 private:
  std::unique_ptr<Engine> cpu_;
  Observed* seen_;
  int gpu_;
};

using FakeProvider = testing::FakeSliceProvider;

// "Device" memory is host memory; the GPU is one worker thread that runs batches in order, and
// completions go through a Notifier as on a real GPU.
class FakeDevice final : public GpuDevice {
 public:
  explicit FakeDevice(Observed* seen, int index = 0)
      : seen_(seen), gpu_("fake-gpu"), notify_("fake-notify") {
    layout_.index = index;
    layout_.name = "FakeH100";
    layout_.sms = 132;
    layout_.group_sms = 8;
    layout_.memory_bytes = int64_t{80} << 30;
  }
  ~FakeDevice() override {
    gpu_.Stop();
    notify_.Stop();
  }
  const GpuLayout& layout() const override { return layout_; }
  runtime::SliceProvider& provider() override { return provider_; }
  void* Stream(uint64_t place) override {
    return provider_.Live(place) ? reinterpret_cast<void*>(0x1000 + place) : nullptr;
  }
  Result<void*> HostAlloc(size_t bytes) override {
    ++seen_->host_allocs;
    return std::malloc(bytes);
  }
  void HostFree(void* p) override {
    ++seen_->host_frees;
    std::free(p);
  }
  bool IsPinned(const void* p, size_t bytes) override {
    std::lock_guard<std::mutex> lock(pinned_mu_);
    auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& [start, len] : pinned_)
      if (a >= start && a + bytes <= start + len) return true;
    return false;
  }
  void Pin(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(pinned_mu_);
    pinned_.emplace_back(reinterpret_cast<uintptr_t>(p), bytes);
  }
  Status Bind(uint64_t place, GpuExecutable* exe) override {
    void* s = Stream(place);
    if (!s) return Status::Internal("place " + std::to_string(place) + " does not exist");
    return exe->Bind(s);
  }
  Status Submit(const Batch& b, Completion how, std::function<void(Status)> done) override {
    if (!Stream(b.place))
      return Status::Internal("place " + std::to_string(b.place) + " does not exist");
    auto work = [this, b] {
      void* stream = Stream(b.place);
      if (!stream) {
        ++seen_->on_dead_place;
        return Status::Internal("the place was destroyed under a running batch");
      }
      const auto& ins = b.exe->device_inputs();
      for (size_t i = 0; i < ins.size(); ++i) {
        if (IsPinned(b.inputs[i], ins[i].bytes)) ++seen_->direct_inputs;
        std::memcpy(ins[i].device, b.inputs[i], ins[i].bytes);
      }
      TESSERA_RETURN_IF_ERROR(b.exe->Enqueue(stream));
      const auto& outs = b.exe->device_outputs();
      for (size_t o = 0; o < outs.size(); ++o)
        std::memcpy(b.outputs[o], outs[o].device, outs[o].bytes);
      std::memcpy(b.error_word, b.exe->device_error_word(), sizeof(int32_t));
      ++seen_->runs;
      return Status::OK();
    };
    if (how != Completion::kEvent) {
      done(work());
      return Status::OK();
    }
    gpu_.Post([this, work, done] {
      Status st = work();
      notify_.Post([done, st] { done(st); });
    });
    return Status::OK();
  }
  FakeProvider& fake_provider() { return provider_; }

 private:
  Observed* seen_;
  GpuLayout layout_;
  FakeProvider provider_;
  std::mutex pinned_mu_;
  std::vector<std::pair<uintptr_t, size_t>> pinned_;
  runtime::Notifier gpu_, notify_;
};

class GpuServingTest : public ::testing::TestWithParam<Completion> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tessera_gpu_serving_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(dir_);
    ASSERT_TRUE(zoo::WriteRepository(dir_.string(), {"tiny_mlp"}).ok());
    device_ = std::make_shared<FakeDevice>(&seen_);
    slices_ = std::make_shared<runtime::GpuSlices>(device_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // tiny_mlp with `extra` config lines (parameters, instance groups).
  void WriteModel(const std::string& name, const std::string& extra) {
    if (name != "tiny_mlp") fs::copy(dir_ / "tiny_mlp", dir_ / name, fs::copy_options::recursive);
    std::ofstream(dir_ / name / "config.pbtxt")
        << "name: \"" << name << "\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 64\n"
        << "input { name: \"input\" data_type: TYPE_FP32 dims: 16 }\n"
        << "output { name: \"output_out\" data_type: TYPE_FP32 dims: 16 }\n"
        << "dynamic_batching { }\n"
        << extra;
  }
  static std::string SliceSms(int sms, int instances = 1) {
    return "parameters { key: \"slice_sms\" value: { string_value: \"" + std::to_string(sms) +
           "\" } }\ninstance_group { count: " + std::to_string(instances) + " kind: KIND_GPU }\n";
  }

  ManagerOptions Options() {
    ManagerOptions o;
    o.repository = dir_.string();
    o.threads_per_instance = 1;
    o.gpus = {slices_};
    o.completion = GetParam();
    Observed* seen = &seen_;
    o.engine = [seen](const ModelConfig& c, int gpu) -> Result<std::unique_ptr<Engine>> {
      for (const auto& g : c.instance_groups)
        if (g.kind == InstanceGroup::Kind::kCpu) return CreateCpuEngine(1);
      return std::unique_ptr<Engine>(std::make_unique<FakeGpuEngine>(seen, gpu < 0 ? 0 : gpu));
    };
    return o;
  }

  static RequestPtr MakeRequest(const std::string& model, int64_t rows, float value,
                                ResponseCallback done) {
    auto r = std::make_unique<InferenceRequest>();
    r->model = model;
    r->input_names = {"input"};
    Tensor t = Tensor::Allocate(DataType::kFloat32, {rows, 16});
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = value + 0.01f * (i % 16);
    r->inputs = {t};
    r->timing.arrive = SystemClock::Default()->NowNs();
    r->done = std::move(done);
    return r;
  }
  static InferenceResponse Infer(ModelManager& m, const std::string& model, int64_t rows,
                                 float value = 1.0f) {
    std::promise<InferenceResponse> p;
    auto f = p.get_future();
    m.Infer(MakeRequest(model, rows, value,
                        [&p](InferenceResponse&& r) { p.set_value(std::move(r)); }));
    return f.get();
  }

  // Four clients sending requests of 1-3 rows to `model` until Stop (or destruction, so that a
  // failed ASSERT does not leave them running); what they saw.
  struct Traffic {
    Traffic(ModelManager& m, const std::string& model) {
      for (int c = 0; c < 4; ++c)
        clients.emplace_back([this, &m, model, c] {
          while (!stop) {
            const InferenceResponse r = Infer(m, model, 1 + c % 3, 0.25f * c);
            std::lock_guard<std::mutex> lock(mu);
            if (r.status.ok()) {
              ++ok;
              sms_seen.insert(r.gpu_sms);
            } else {
              ++failed;
              if (first_error.empty()) first_error = r.status.ToString();
            }
          }
        });
    }
    ~Traffic() { Stop(); }
    void Stop() {
      stop = true;
      for (auto& t : clients)
        if (t.joinable()) t.join();
    }
    void WaitFor(int n) {
      for (int i = 0; i < 2000 && ok < n; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::mutex mu;
    std::set<int> sms_seen;  // guarded by mu once the clients run (read after Stop)
    std::string first_error;
    std::vector<std::thread> clients;
  };

  fs::path dir_;
  Observed seen_;
  std::shared_ptr<FakeDevice> device_;
  std::shared_ptr<runtime::GpuSlices> slices_;
};

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_P(GpuServingTest, InstancesGetTheirSlicesAndAnswerLikeTheCpu) {
  WriteModel("tiny_mlp", SliceSms(32, 2));
  WriteModel("cpu_mlp", "instance_group { count: 1 kind: KIND_CPU }\n");
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  ASSERT_TRUE(m.Load("cpu_mlp").ok());
  // Two instances, 4 groups (32 SMs) each; the rest stays free.
  EXPECT_EQ(device_->fake_provider().Places().size(), 2u);
  EXPECT_EQ(slices_->free_groups(), 16 - 8);
  auto s = m.Slice("tiny_mlp");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->gpu, 0);
  EXPECT_EQ(s->sms, 32);
  EXPECT_EQ(s->gpu_sms, 132);
  EXPECT_TRUE(s->confined);
  EXPECT_EQ(s->sharing, "fake");
  const std::string metrics = server::PrometheusText(m);
  EXPECT_TRUE(Contains(metrics,
                       "tessera_model_slice_sms{model=\"tiny_mlp\",gpu=\"0\",sharing=\"fake\"} 32"))
      << metrics;
  EXPECT_TRUE(Contains(metrics, "tessera_model_compute_threads{model=\"cpu_mlp\"} 1"));
  {
    std::lock_guard<std::mutex> lock(seen_.mu);
    ASSERT_FALSE(seen_.sm_targets.empty());
    for (int t : seen_.sm_targets) EXPECT_EQ(t, 32) << "compiled for the slice's SMs";
  }
  // Odd batch sizes (padded to a bucket) and single rows answer exactly as the CPU model.
  for (int64_t rows : {1, 3, 8, 13}) {
    const InferenceResponse g = Infer(m, "tiny_mlp", rows, 0.5f);
    const InferenceResponse c = Infer(m, "cpu_mlp", rows, 0.5f);
    ASSERT_TRUE(g.status.ok()) << g.status.ToString();
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_EQ(g.gpu_sms, 32);
    EXPECT_EQ(c.gpu_sms, 0);
    ASSERT_EQ(g.outputs.size(), 1u);
    ASSERT_EQ(g.outputs[0].shape(), (Shape{rows, 16}));
    for (int64_t i = 0; i < g.outputs[0].numel(); ++i)
      ASSERT_NEAR(g.outputs[0].data<float>()[i], c.outputs[0].data<float>()[i], 1e-5) << i;
  }
  EXPECT_EQ(seen_.unbound.load(), 0);
  // A bad index found on the GPU fails that batch's requests only.
  seen_.gather_fault = true;
  const InferenceResponse bad = Infer(m, "tiny_mlp", 2);
  EXPECT_EQ(bad.status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(bad.status.message(), "out of range")) << bad.status.ToString();
  EXPECT_TRUE(Infer(m, "tiny_mlp", 2).status.ok());
  // A CPU model has no SM slice; a GPU model no thread slice.
  EXPECT_EQ(m.SetSliceSms("cpu_mlp", 16).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.SetSliceThreads("tiny_mlp", 1).status().code(), StatusCode::kInvalidArgument);
  // Unloading gives the groups back.
  ASSERT_TRUE(m.Unload("tiny_mlp").ok());
  EXPECT_EQ(slices_->free_groups(), 16);
  EXPECT_TRUE(device_->fake_provider().Places().empty());
}

TEST_P(GpuServingTest, SlicesThatDoNotFitAreRefusedAndOthersKeepServing) {
  WriteModel("tiny_mlp", SliceSms(64));
  WriteModel("second", SliceSms(64));
  WriteModel("third", SliceSms(64));
  WriteModel("odd", SliceSms(20));
  WriteModel("unconfined", "instance_group { count: 1 kind: KIND_GPU }\n");
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  ASSERT_TRUE(m.Load("second").ok());
  const Status third = m.Load("third");
  EXPECT_EQ(third.code(), StatusCode::kResourceExhausted) << third.ToString();
  EXPECT_TRUE(Contains(third.message(), "0 SMs are free")) << third.ToString();
  EXPECT_TRUE(Contains(third.message(), "tiny_mlp v1 instance 0 (64 SMs)")) << third.ToString();
  const Status odd = m.Load("odd");
  EXPECT_EQ(odd.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(odd.message(), "expected a multiple of 8")) << odd.ToString();
  // A model without a slice runs unconfined on the whole GPU, beside the slices.
  ASSERT_TRUE(m.Load("unconfined").ok());
  auto u = m.Slice("unconfined");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->confined);
  EXPECT_EQ(u->sms, 132);
  EXPECT_EQ(m.SetSliceSms("unconfined", 16).status().code(), StatusCode::kFailedPrecondition);
  for (const char* name : {"tiny_mlp", "second", "unconfined"})
    EXPECT_TRUE(Infer(m, name, 4).status.ok()) << name;
  // Nothing leaked from the refused loads: one place per loaded instance, plus the shared one.
  EXPECT_EQ(device_->fake_provider().Places().size(), 3u);
}

TEST_P(GpuServingTest, LiveResizeUnderLoadLosesNothing) {
  WriteModel("tiny_mlp", SliceSms(32, 2));
  WriteModel("neighbour", SliceSms(16));
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  ASSERT_TRUE(m.Load("neighbour").ok());
  const auto before = device_->fake_provider().Places();

  Traffic traffic(m, "tiny_mlp");
  std::atomic<int>& ok = traffic.ok;
  auto wait_for = [&](int n) { traffic.WaitFor(n); };
  wait_for(50);
  auto grown = m.SetSliceSms("tiny_mlp", 48);
  ASSERT_TRUE(grown.ok()) << grown.status().ToString();
  EXPECT_EQ(grown->sms, 48);
  EXPECT_GT(grown->resize_ms, 0);
  wait_for(ok + 50);
  // Too big for what is free (2 x 48 + 16 of 128 held): refused, nothing changes.
  auto too_big = m.SetSliceSms("tiny_mlp", 72);
  EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted) << too_big.status().ToString();
  EXPECT_TRUE(Contains(too_big.status().message(), "nothing was changed"));
  EXPECT_EQ(m.Slice("tiny_mlp")->sms, 48);
  // Not a whole number of groups: refused before anything is made.
  EXPECT_EQ(m.SetSliceSms("tiny_mlp", 20).status().code(), StatusCode::kInvalidArgument);
  // A place that cannot be made aborts the move; the old slices keep serving.
  device_->fake_provider().fail_next = true;
  EXPECT_FALSE(m.SetSliceSms("tiny_mlp", 16).ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->sms, 48);
  auto shrunk = m.SetSliceSms("tiny_mlp", 16);
  ASSERT_TRUE(shrunk.ok()) << shrunk.status().ToString();
  EXPECT_EQ(shrunk->sms, 16);
  wait_for(ok + 50);
  traffic.Stop();

  EXPECT_EQ(traffic.failed.load(), 0) << traffic.first_error;
  EXPECT_EQ(seen_.on_dead_place.load(), 0);
  EXPECT_EQ(seen_.unbound.load(), 0);
  EXPECT_TRUE(traffic.sms_seen.count(32) && traffic.sms_seen.count(48) &&
              traffic.sms_seen.count(16))
      << "requests ran on every slice size";
  // The old places are gone; the model holds 2 x 2 groups, the neighbour its 2.
  const auto after = device_->fake_provider().Places();
  EXPECT_EQ(after.size(), 3u);
  for (const auto& [place, groups] : before)
    if (groups.size() == 4) {
      EXPECT_EQ(after.count(place), 0u) << "old place " << place << " kept";
    }
  EXPECT_EQ(slices_->free_groups(), 16 - 4 - 2);
  // A reload keeps the live size.
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->sms, 16);
}

TEST_P(GpuServingTest, ResizeHoldsRoomForBothSlicesAndGivesItBack) {
  WriteModel("tiny_mlp", SliceSms(16));
  // Its memory alone, measured with room to spare.
  int64_t alone = 0;
  {
    seen_.gpu_memory = int64_t{1} << 30;
    ModelManager m(Options());
    ASSERT_TRUE(m.Load("tiny_mlp").ok());
    alone = static_cast<int64_t>(m.Stats("tiny_mlp", 0).value().at(0).memory_bytes);
    ASSERT_GT(alone, 0);
  }
  // Exactly enough to load: the second set of arenas a resize needs does not fit; the model
  // keeps serving on its slice.
  {
    seen_.gpu_memory = alone;
    ModelManager m(Options());
    ASSERT_TRUE(m.Load("tiny_mlp").ok());
    auto r = m.SetSliceSms("tiny_mlp", 24);
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), "resizing to 24 SMs: 'tiny_mlp v1 (resize)' needs"))
        << r.status().message();
    EXPECT_TRUE(Contains(r.status().message(), "nothing was changed"));
    EXPECT_EQ(m.Slice("tiny_mlp")->sms, 16);
    EXPECT_TRUE(Infer(m, "tiny_mlp", 2).status.ok());
  }
  // Room for both: the resize goes through, and gives the room back (a second one fits too).
  {
    seen_.gpu_memory = 2 * alone;
    ModelManager m(Options());
    ASSERT_TRUE(m.Load("tiny_mlp").ok());
    ASSERT_TRUE(m.SetSliceSms("tiny_mlp", 24).ok());
    auto again = m.SetSliceSms("tiny_mlp", 8);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->sms, 8);
    EXPECT_TRUE(Infer(m, "tiny_mlp", 2).status.ok());
  }
}

TEST_P(GpuServingTest, InstancesSpreadOverTheGpusTheirGroupLists) {
  auto second = std::make_shared<FakeDevice>(&seen_, 1);
  auto slices1 = std::make_shared<runtime::GpuSlices>(second);
  WriteModel("tiny_mlp",
             "parameters { key: \"slice_sms\" value: { string_value: \"16\" } }\n"
             "instance_group { count: 2 kind: KIND_GPU gpus: [0, 1] }\n");
  ManagerOptions o = Options();
  o.gpus = {slices_, slices1};
  ModelManager m(o);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  // Two instances on each GPU (Triton's rule), each GPU with its own slices.
  EXPECT_EQ(m.Slice("tiny_mlp")->instances, 4);
  EXPECT_EQ(device_->fake_provider().Places().size(), 2u);
  EXPECT_EQ(second->fake_provider().Places().size(), 2u);
  EXPECT_EQ(slices_->free_groups(), 12);
  EXPECT_EQ(slices1->free_groups(), 12);
  // Concurrent requests keep every instance busy; all answer.
  std::vector<std::future<InferenceResponse>> pending;
  for (int i = 0; i < 32; ++i)
    pending.push_back(
        std::async(std::launch::async, [&m, i] { return Infer(m, "tiny_mlp", 1 + i % 4); }));
  for (auto& f : pending) EXPECT_TRUE(f.get().status.ok());
  // A live resize moves the instances on both GPUs.
  ASSERT_TRUE(m.SetSliceSms("tiny_mlp", 24).ok());
  EXPECT_EQ(slices_->free_groups(), 10);
  EXPECT_EQ(slices1->free_groups(), 10);
  EXPECT_TRUE(Infer(m, "tiny_mlp", 2).status.ok());
  ASSERT_TRUE(m.Unload("tiny_mlp").ok());
  EXPECT_EQ(slices1->free_groups(), 16);
}

TEST_P(GpuServingTest, InstancesAddedResizedAndRemovedLiveAcrossGpusLoseNothing) {
  auto second = std::make_shared<FakeDevice>(&seen_, 1);
  auto slices1 = std::make_shared<runtime::GpuSlices>(second);
  WriteModel("tiny_mlp",
             "parameters { key: \"slice_sms\" value: { string_value: \"16\" } }\n"
             "instance_group { count: 1 kind: KIND_GPU gpus: [0] }\n");
  ManagerOptions o = Options();
  o.gpus = {slices_, slices1};
  ModelManager m(o);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(slices_->free_groups(), 14);

  Traffic traffic(m, "tiny_mlp");
  std::atomic<int>& ok = traffic.ok;
  auto wait_for = [&](int n) { traffic.WaitFor(n); };
  wait_for(50);
  // A replica on GPU 1: its own 24-SM slice there, its own batch limit.
  InstanceChange add;
  add.size = 24;
  add.gpu = 1;
  add.max_batch = 4;
  auto st = m.AddInstance("tiny_mlp", add);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->instance_slices.size(), 2u);
  EXPECT_EQ(st->instance_slices[1].gpu, 1);
  EXPECT_EQ(st->instance_slices[1].sms, 24);
  EXPECT_EQ(st->instance_slices[1].max_batch, 4);
  EXPECT_TRUE(st->instance_slices[1].confined);
  EXPECT_EQ(slices1->free_groups(), 13);
  EXPECT_EQ(second->fake_provider().Places().size(), 1u);
  wait_for(ok + 100);
  // Refusals change nothing: not whole groups, not free, no such GPU, a place that fails.
  add.size = 20;
  EXPECT_EQ(m.AddInstance("tiny_mlp", add).status().code(), StatusCode::kInvalidArgument);
  add.size = 200;
  add.gpu = 0;
  EXPECT_EQ(m.AddInstance("tiny_mlp", add).status().code(), StatusCode::kInvalidArgument);
  add.size = 128;
  EXPECT_EQ(m.AddInstance("tiny_mlp", add).status().code(), StatusCode::kResourceExhausted);
  add.size = 8;
  add.gpu = 5;
  EXPECT_EQ(m.AddInstance("tiny_mlp", add).status().code(), StatusCode::kInvalidArgument);
  add.gpu = 0;
  device_->fake_provider().fail_next = true;
  EXPECT_FALSE(m.AddInstance("tiny_mlp", add).ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->instance_slices.size(), 2u);
  EXPECT_EQ(slices_->free_groups(), 14);
  EXPECT_EQ(slices1->free_groups(), 13);
  // One instance resized, make before break, on its GPU only.
  InstanceChange grow;
  grow.size = 32;
  st = m.ChangeInstance("tiny_mlp", 1, grow);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->instance_slices[1].sms, 32);
  EXPECT_EQ(st->instance_slices[0].sms, 16);
  EXPECT_EQ(slices1->free_groups(), 12);
  EXPECT_EQ(slices_->free_groups(), 14);
  wait_for(ok + 100);
  // The config's instance removed: GPU 0 is free again, GPU 1 carries on.
  st = m.RemoveInstance("tiny_mlp", 0);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(slices_->free_groups(), 16);
  EXPECT_TRUE(device_->fake_provider().Places().empty());
  wait_for(ok + 100);
  traffic.Stop();
  EXPECT_EQ(traffic.failed.load(), 0) << traffic.first_error;
  EXPECT_EQ(seen_.on_dead_place.load(), 0);
  EXPECT_EQ(seen_.unbound.load(), 0);
  EXPECT_TRUE(traffic.sms_seen.count(16) && traffic.sms_seen.count(24) &&
              traffic.sms_seen.count(32))
      << "requests ran on every instance's slice";
  // A reload (new version) keeps that layout: one 32-SM instance on GPU 1 with its limit.
  fs::copy(dir_ / "tiny_mlp" / "1", dir_ / "tiny_mlp" / "2", fs::copy_options::recursive);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  auto kept = m.Slice("tiny_mlp");
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->instance_slices.size(), 1u);
  EXPECT_EQ(kept->versions, std::vector<int64_t>{2});
  EXPECT_EQ(kept->instance_slices[0].gpu, 1);
  EXPECT_EQ(kept->instance_slices[0].sms, 32);
  EXPECT_EQ(kept->instance_slices[0].max_batch, 4);
  EXPECT_EQ(slices_->free_groups(), 16);
  EXPECT_EQ(slices1->free_groups(), 12);
  EXPECT_TRUE(Infer(m, "tiny_mlp", 3).status.ok());
  // Unloading frees the replica's slice and its memory reservation: a load fits again.
  ASSERT_TRUE(m.Unload("tiny_mlp").ok());
  EXPECT_EQ(slices1->free_groups(), 16);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->instance_slices.size(), 1u);
}

TEST_P(GpuServingTest, ModelsWithoutABatchDimensionRunToo) {
  // max_batch_size 0: every request is its own batch, shapes as the config gives them.
  std::ofstream(dir_ / "tiny_mlp" / "config.pbtxt")
      << "name: \"tiny_mlp\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 0\n"
      << "input { name: \"input\" data_type: TYPE_FP32 dims: [3, 16] }\n"
      << "output { name: \"output_out\" data_type: TYPE_FP32 dims: [3, 16] }\n"
      << SliceSms(8, 2);
  WriteModel("cpu_mlp", "instance_group { count: 1 kind: KIND_CPU }\n");
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  ASSERT_TRUE(m.Load("cpu_mlp").ok());
  std::vector<std::future<InferenceResponse>> pending;
  for (int i = 0; i < 8; ++i)
    pending.push_back(
        std::async(std::launch::async, [&m, i] { return Infer(m, "tiny_mlp", 3, 0.1f * i); }));
  for (int i = 0; i < 8; ++i) {
    const InferenceResponse g = pending[i].get();
    ASSERT_TRUE(g.status.ok()) << g.status.ToString();
    ASSERT_EQ(g.outputs.at(0).shape(), (Shape{3, 16}));
    const InferenceResponse c = Infer(m, "cpu_mlp", 3, 0.1f * i);
    ASSERT_TRUE(c.status.ok());
    for (int64_t k = 0; k < 48; ++k)
      ASSERT_NEAR(g.outputs[0].data<float>()[k], c.outputs[0].data<float>()[k], 1e-5);
  }
}

TEST_P(GpuServingTest, PinnedRequestMemoryIsCopiedDirectly) {
  WriteModel("tiny_mlp", SliceSms(8));
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  // A request whose tensor lives in pinned memory (a registered shared-memory region) and fills
  // its bucket goes to the GPU from there; the answer is the same as from a staged copy.
  const InferenceResponse staged = Infer(m, "tiny_mlp", 8, 0.75f);
  ASSERT_TRUE(staged.status.ok());
  EXPECT_EQ(seen_.direct_inputs.load(), 0);
  Tensor region = Tensor::Allocate(DataType::kFloat32, {8, 16});
  device_->Pin(region.raw(), region.nbytes());
  for (int64_t i = 0; i < region.numel(); ++i) region.data<float>()[i] = 0.75f + 0.01f * (i % 16);
  std::promise<InferenceResponse> p;
  auto r =
      MakeRequest("tiny_mlp", 8, 0, [&p](InferenceResponse&& x) { p.set_value(std::move(x)); });
  r->inputs = {region};
  m.Infer(std::move(r));
  const InferenceResponse direct = p.get_future().get();
  ASSERT_TRUE(direct.status.ok()) << direct.status.ToString();
  EXPECT_EQ(seen_.direct_inputs.load(), 1);
  for (int64_t i = 0; i < 8 * 16; ++i)
    EXPECT_EQ(direct.outputs[0].data<float>()[i], staged.outputs[0].data<float>()[i]);
  // Rows that need padding to the bucket are staged, pinned or not.
  EXPECT_TRUE(Infer(m, "tiny_mlp", 5).status.ok());
  EXPECT_EQ(seen_.direct_inputs.load(), 1);
}

TEST_P(GpuServingTest, PinnedBuffersAreRecycledAndAllReturned) {
  {
    WriteModel("tiny_mlp", SliceSms(8));
    ModelManager m(Options());
    ASSERT_TRUE(m.Load("tiny_mlp").ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(Infer(m, "tiny_mlp", 5).status.ok());
    const int64_t allocs = seen_.host_allocs;
    EXPECT_GT(allocs, 0);
    ASSERT_TRUE(m.SetSliceSms("tiny_mlp", 16).ok());
    EXPECT_EQ(seen_.host_allocs.load(), allocs * 2) << "the new slice's buffers beside the old";
    ASSERT_TRUE(m.SetSliceSms("tiny_mlp", 8).ok());
    // Buffers of the dropped executables were reused by the new ones, not allocated again.
    EXPECT_EQ(seen_.host_allocs.load(), allocs * 2);
  }
  slices_.reset();  // the pool goes with the GPU
  EXPECT_EQ(seen_.host_allocs.load(), seen_.host_frees.load());
}

INSTANTIATE_TEST_SUITE_P(Completions, GpuServingTest,
                         ::testing::Values(Completion::kEvent, Completion::kSync,
                                           Completion::kSpin),
                         [](const auto& info) { return runtime::CompletionName(info.param); });

TEST(PinnedPool, SizeClassesAndReuse) {
  Observed seen;
  FakeDevice dev(&seen);
  {
    runtime::PinnedPool pool(&dev);
    void* a = pool.Get(100).value();
    void* b = pool.Get(5000).value();
    EXPECT_EQ(pool.held_bytes(), 4096u + 8192u);
    pool.Put(a);
    EXPECT_EQ(pool.Get(4096).value(), a) << "same class: reused";
    EXPECT_NE(pool.Get(10).value(), a) << "in use: a new one";
    pool.Put(b);
    EXPECT_EQ(pool.Get(8000).value(), b);
    EXPECT_EQ(seen.host_allocs.load(), 3);
  }
  EXPECT_EQ(seen.host_frees.load(), 3);
}

TEST(Notifier, RunsInOrderAndDrainsOnStop) {
  std::vector<int> order;
  {
    runtime::Notifier n("test");
    for (int i = 0; i < 100; ++i) n.Post([&order, i] { order.push_back(i); });
    n.Stop();
  }
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(Completion, Names) {
  for (auto c : {Completion::kEvent, Completion::kSync, Completion::kSpin})
    EXPECT_EQ(runtime::ParseCompletion(runtime::CompletionName(c)).value(), c);
  EXPECT_TRUE(Contains(runtime::ParseCompletion("poll").status().message(),
                       "expected event, sync or spin"));
}

}  // namespace
}  // namespace tessera
