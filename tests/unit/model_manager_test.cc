#include "tessera/runtime/model_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "tessera/core/clock.h"
#include "tessera/zoo/zoo.h"

namespace tessera {
namespace {
namespace fs = std::filesystem;

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera_manager_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    ASSERT_TRUE(zoo::WriteRepository(dir_.string(), {"tiny_mlp"}).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteConfig(const std::string& text) {
    std::ofstream(dir_ / "tiny_mlp" / "config.pbtxt") << text;
  }
  ManagerOptions Options() {
    ManagerOptions o;
    o.repository = dir_.string();
    o.threads_per_instance = 1;
    return o;
  }

  // Sends one request of `rows` rows and waits for its response.
  static InferenceResponse Infer(ModelManager& m, int64_t rows, float value = 1.0f,
                                 int64_t version = 0, const std::string& input = "input") {
    std::promise<InferenceResponse> p;
    auto f = p.get_future();
    m.Infer(MakeRequest(rows, value, version, input,
                        [&p](InferenceResponse&& r) { p.set_value(std::move(r)); }));
    return f.get();
  }
  static RequestPtr MakeRequest(int64_t rows, float value, int64_t version,
                                const std::string& input, ResponseCallback done) {
    auto r = std::make_unique<InferenceRequest>();
    r->model = "tiny_mlp";
    r->version = version;
    r->input_names = {input};
    Tensor t = Tensor::Allocate(DataType::kFloat32, {rows, 16});
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = value;
    r->inputs = {t};
    r->timing.arrive = SystemClock::Default()->NowNs();
    r->done = std::move(done);
    return r;
  }

  // The model's instances now (none when it is not loaded).
  static std::vector<InstanceSlice> Instances(ModelManager& m) {
    std::vector<InstanceSlice> out;
    if (auto s = m.Slice("tiny_mlp"); s.ok()) out = s->instance_slices;
    return out;
  }

  fs::path dir_;
};

TEST_F(ManagerTest, LoadsServesAndCountsStatistics) {
  ModelManager m(Options());
  auto results = m.LoadStartupModels();
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0].second.ok()) << results[0].second.ToString();
  EXPECT_TRUE(m.AllReady());
  InferenceResponse r = Infer(m, 3);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.output_names[0], "output_out");
  EXPECT_EQ(r.outputs[0].shape(), (Shape{3, 16}));
  EXPECT_EQ(r.version, 1);
  // Identical rows give identical outputs.
  for (int k = 0; k < 16; ++k)
    EXPECT_EQ(r.outputs[0].data<float>()[k], r.outputs[0].data<float>()[32 + k]);
  auto stats = m.Stats("tiny_mlp", 0);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)[0].success.count, 1u);
  EXPECT_EQ((*stats)[0].inference_count, 3u);
  EXPECT_EQ((*stats)[0].execution_count, 1u);
  EXPECT_GT(r.timing.output_done, r.timing.enqueue);
}

TEST_F(ManagerTest, BatchesConcurrentRequestsAndCutsEachItsOwnRows) {
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  // Reference outputs, one request at a time.
  std::vector<std::vector<float>> want;
  for (int i = 0; i < 24; ++i) {
    auto r = Infer(m, 1, 0.1f * static_cast<float>(i));
    ASSERT_TRUE(r.status.ok());
    want.emplace_back(r.outputs[0].data<float>(), r.outputs[0].data<float>() + 16);
  }
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  std::vector<InferenceResponse> got(24);
  for (int i = 0; i < 24; ++i)
    m.Infer(MakeRequest(1, 0.1f * static_cast<float>(i), 0, "input", [&, i](InferenceResponse&& r) {
      std::lock_guard<std::mutex> lock(mu);
      got[i] = std::move(r);
      ++answered;
      cv.notify_all();
    }));
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return answered == 24; });
  uint64_t max_rows = 0;
  for (int i = 0; i < 24; ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.ToString();
    max_rows = std::max<uint64_t>(max_rows, got[i].batch_rows);
    for (int k = 0; k < 16; ++k)
      EXPECT_NEAR(got[i].outputs[0].data<float>()[k], want[i][k], 1e-5) << "request " << i;
  }
  EXPECT_GT(max_rows, 1u) << "24 requests queued at once never shared a batch";
}

TEST_F(ManagerTest, ABatchLimitSetLiveCapsBatchesAndSurvivesAReload) {
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  auto st = m.Slice("tiny_mlp");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->config_max_batch, 64);
  EXPECT_EQ(st->max_batch, 64);
  // Bad limits: clear errors, nothing changes.
  EXPECT_EQ(m.SetBatchLimit("tiny_mlp", 65).status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.SetBatchLimit("tiny_mlp", -1).status().message().find("1 to 64"), std::string::npos);
  EXPECT_EQ(m.SetBatchLimit("nope", 2).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(m.CheckBatchLimit("tiny_mlp", 65).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(m.CheckBatchLimit("tiny_mlp", 2).ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->max_batch, 64);  // a check changes nothing
  st = m.SetBatchLimit("tiny_mlp", 2);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->max_batch, 2);
  EXPECT_EQ(st->config_max_batch, 64);
  // 24 requests queued at once: no batch gathers more than 2 rows.
  auto burst = [&] {
    std::mutex mu;
    std::condition_variable cv;
    int answered = 0;
    uint64_t max_rows = 0;
    for (int i = 0; i < 24; ++i)
      m.Infer(MakeRequest(1, 1.0f, 0, "input", [&](InferenceResponse&& r) {
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_TRUE(r.status.ok()) << r.status.ToString();
        max_rows = std::max<uint64_t>(max_rows, r.batch_rows);
        ++answered;
        cv.notify_all();
      }));
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return answered == 24; });
    return max_rows;
  };
  EXPECT_LE(burst(), 2u);
  // A request carrying more rows than the limit still runs.
  auto big = Infer(m, 5);
  ASSERT_TRUE(big.status.ok()) << big.status.ToString();
  EXPECT_EQ(big.batch_rows, 5u);
  // A reload (new version) keeps the limit.
  fs::copy(dir_ / "tiny_mlp" / "1", dir_ / "tiny_mlp" / "2", fs::copy_options::recursive);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(m.Slice("tiny_mlp")->max_batch, 2);
  EXPECT_LE(burst(), 2u);
  // 0 lifts it.
  EXPECT_EQ(m.SetBatchLimit("tiny_mlp", 0)->max_batch, 64);
  // The admin APIs' change: a bad limit beside a good size changes neither; an empty change is
  // refused; size and limit together both apply.
  const int threads = m.Slice("tiny_mlp")->threads;  // 1 (Options)
  SliceChange bad;
  bad.threads = std::thread::hardware_concurrency() > 1 ? 2 : 1;  // a size it could take
  bad.max_batch = 65;
  EXPECT_EQ(m.ChangeSlice("tiny_mlp", bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Slice("tiny_mlp")->threads, threads);
  EXPECT_EQ(m.ChangeSlice("tiny_mlp", SliceChange{}).status().code(), StatusCode::kInvalidArgument);
  SliceChange both;
  both.threads = 1;
  both.max_batch = 4;
  auto changed = m.ChangeSlice("tiny_mlp", both);
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_EQ(changed->threads, 1);
  EXPECT_EQ(changed->max_batch, 4);
}

TEST_F(ManagerTest, InstancesAddedAndRemovedLiveShareTheQueueAndFailNothing) {
  ManagerOptions o = Options();
  o.live_instances = true;
  ModelManager m(o);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  const float want = Infer(m, 1, 0.5f).outputs[0].data<float>()[3];
  auto st = m.Slice("tiny_mlp");
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->instance_slices.size(), 1u);
  EXPECT_EQ(st->instance_slices[0].index, 0);
  EXPECT_EQ(st->instance_slices[0].threads, 1);
  EXPECT_EQ(st->instance_slices[0].max_batch, 64);
  EXPECT_EQ(st->instance_slices[0].gpu, -1);

  // Bad changes: clear errors, nothing changes.
  InstanceChange none;
  EXPECT_EQ(m.AddInstance("tiny_mlp", none).status().code(), StatusCode::kInvalidArgument);
  InstanceChange zero;
  zero.size = 0;
  EXPECT_NE(m.AddInstance("tiny_mlp", zero).status().message().find("compute threads, got 0"),
            std::string::npos);
  InstanceChange on_gpu;
  on_gpu.size = 1;
  on_gpu.gpu = 0;
  EXPECT_EQ(m.AddInstance("tiny_mlp", on_gpu).status().code(), StatusCode::kInvalidArgument);
  InstanceChange big_batch;
  big_batch.size = 1;
  big_batch.max_batch = 65;
  EXPECT_EQ(m.AddInstance("tiny_mlp", big_batch).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AddInstance("nope", big_batch).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(m.RemoveInstance("tiny_mlp", 0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Instances(m).size(), 1u);

  // Traffic from 8 threads the whole time: nothing may fail, every answer must be right.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, bad{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < 8; ++t)
    senders.emplace_back([&] {
      while (!stop) {
        auto r = Infer(m, 1, 0.5f);
        ++sent;
        if (!r.status.ok() || r.outputs[0].data<float>()[3] != want) ++bad;
      }
    });
  auto ran = [&](int index) -> uint64_t {
    for (const auto& i : Instances(m))
      if (i.index == index) return i.batches;
    return 0;
  };
  auto wait_for = [&](auto pred) {
    for (int k = 0; k < 1000 && !pred(); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return pred();
  };

  InstanceChange add;
  add.size = 1;
  add.max_batch = 2;
  st = m.AddInstance("tiny_mlp", add);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->instance_slices.size(), 2u);
  EXPECT_EQ(st->instances, 2);
  EXPECT_EQ(st->instance_slices[1].index, 1);
  EXPECT_EQ(st->instance_slices[1].max_batch, 2);
  EXPECT_TRUE(wait_for([&] { return ran(1) > 20 && ran(0) > 0; }))
      << "the new instance ran " << ran(1) << " batches";
  // Its own limit holds: no batch of it gathered more than 2 rows.
  for (const auto& i : Instances(m)) {
    if (i.index != 1) continue;
    for (const auto& [rows, n] : i.batch_rows) EXPECT_LE(rows, 2u);
  }
  // Resize it and lift its limit.
  InstanceChange change;
  change.size = 1;
  change.max_batch = 0;
  st = m.ChangeInstance("tiny_mlp", 1, change);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->instance_slices[1].max_batch, 64);
  EXPECT_EQ(m.ChangeInstance("tiny_mlp", 7, change).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(m.ChangeInstance("tiny_mlp", 1, InstanceChange{}).status().code(),
            StatusCode::kInvalidArgument);

  // Remove the config's instance: the new one carries on alone.
  st = m.RemoveInstance("tiny_mlp", 0);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->instance_slices.size(), 1u);
  EXPECT_EQ(st->instance_slices[0].index, 1);
  const uint64_t before = ran(1);
  EXPECT_TRUE(wait_for([&] { return ran(1) > before + 20; }));
  auto missing = m.RemoveInstance("tiny_mlp", 0);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("its instances: 1"), std::string::npos)
      << missing.status().message();
  EXPECT_EQ(m.RemoveInstance("tiny_mlp", 1).status().code(), StatusCode::kFailedPrecondition);
  stop = true;
  for (auto& t : senders) t.join();
  EXPECT_GT(sent.load(), 100);
  EXPECT_EQ(bad.load(), 0) << "of " << sent.load();
  // A reload (new version) keeps the instances as changed live: two, one with its own limit.
  InstanceChange capped;
  capped.size = 1;
  capped.max_batch = 3;
  ASSERT_TRUE(m.AddInstance("tiny_mlp", capped).ok());
  fs::copy(dir_ / "tiny_mlp" / "1", dir_ / "tiny_mlp" / "2", fs::copy_options::recursive);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  auto kept = Instances(m);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(m.Slice("tiny_mlp")->versions, std::vector<int64_t>{2});
  EXPECT_EQ(kept[0].max_batch, 64);
  EXPECT_EQ(kept[1].max_batch, 3);
  EXPECT_TRUE(Infer(m, 2).status.ok());
  // A config whose instance groups change starts from them.
  WriteConfig(
      "name: \"tiny_mlp\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 64\n"
      "input { name: \"input\" data_type: TYPE_FP32 dims: 16 }\n"
      "output { name: \"output_out\" data_type: TYPE_FP32 dims: 16 }\n"
      "dynamic_batching { }\ninstance_group { count: 3 kind: KIND_CPU }\n");
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  auto fresh = Instances(m);
  ASSERT_EQ(fresh.size(), 3u);
  for (const auto& i : fresh) EXPECT_EQ(i.max_batch, 64);
  // ... and so does the reload after it (nothing was changed live since).
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(Instances(m).size(), 3u);
}

TEST_F(ManagerTest, ACpuModelThatFreedItsWeightsCannotGainAnInstance) {
  ModelManager m(Options());  // live_instances off: fixed shapes free the graph's weights
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  InstanceChange add;
  add.size = 1;
  auto r = m.AddInstance("tiny_mlp", add);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("--tune"), std::string::npos) << r.status().message();
  EXPECT_TRUE(Infer(m, 2).status.ok());
}

TEST_F(ManagerTest, AModelThatDoesNotBatchHasNoBatchLimit) {
  WriteConfig(
      "name: \"tiny_mlp\" max_batch_size: 0 input { name: \"input\" data_type: TYPE_FP32 "
      "dims: [ 1, 16 ] } output { name: \"output_out\" data_type: TYPE_FP32 dims: [ 1, 16 ] }");
  ModelManager m(Options());
  Status loaded = m.Load("tiny_mlp");
  ASSERT_TRUE(loaded.ok()) << loaded.ToString();
  EXPECT_EQ(m.Slice("tiny_mlp")->max_batch, 0);
  auto st = m.SetBatchLimit("tiny_mlp", 1);
  EXPECT_EQ(st.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.status().message().find("does not batch"), std::string::npos);
}

TEST_F(ManagerTest, RejectsBadRequestsWithClearErrorsAndKeepsServing) {
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  auto wrong_name = Infer(m, 1, 1.0f, 0, "nope");
  EXPECT_EQ(wrong_name.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_name.status.message().find("no input 'nope'"), std::string::npos);
  auto too_big = Infer(m, 65);
  EXPECT_EQ(too_big.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.status.message().find("expected 1 to 64"), std::string::npos);
  auto no_version = Infer(m, 1, 1.0f, 7);
  EXPECT_EQ(no_version.status.code(), StatusCode::kNotFound);
  std::promise<InferenceResponse> p;
  auto r =
      MakeRequest(1, 1.0f, 0, "input", [&](InferenceResponse&& x) { p.set_value(std::move(x)); });
  r->model = "unknown";
  m.Infer(std::move(r));
  EXPECT_EQ(p.get_future().get().status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Infer(m, 2).status.ok());
}

TEST_F(ManagerTest, ReloadsANewVersionWithoutFailingRequestsInFlight) {
  WriteConfig("name: \"tiny_mlp\" max_batch_size: 64 dynamic_batching {}");
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread client([&] {
    while (!stop) {
      auto r = Infer(m, 1);
      (r.status.ok() ? ok : failed)++;
    }
  });
  fs::copy(dir_ / "tiny_mlp" / "1", dir_ / "tiny_mlp" / "2", fs::copy_options::recursive);
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  client.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(m.ReadyVersions("tiny_mlp"), (std::vector<int64_t>{2}));
  EXPECT_EQ(Infer(m, 1).version, 2);
}

TEST_F(ManagerTest, AFailedReloadKeepsTheOldVersionServing) {
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  WriteConfig(
      "name: \"tiny_mlp\" max_batch_size: 64 input [{name: \"input\" data_type: TYPE_INT64 dims: "
      "[16]}]");
  Status st = m.Load("tiny_mlp");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("FP32 in the ONNX model"), std::string::npos) << st.message();
  EXPECT_TRUE(Infer(m, 1).status.ok());
}

TEST_F(ManagerTest, UnloadFinishesQueuedRequestsThenRefusesNewOnes) {
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  std::atomic<int> ok{0}, answered{0};
  for (int i = 0; i < 50; ++i)
    m.Infer(MakeRequest(4, 1.0f, 0, "input", [&](InferenceResponse&& r) {
      if (r.status.ok()) ++ok;
      ++answered;
    }));
  ASSERT_TRUE(m.Unload("tiny_mlp").ok());
  EXPECT_EQ(answered.load(), 50);
  EXPECT_EQ(ok.load(), 50);
  EXPECT_EQ(Infer(m, 1).status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(m.Unload("tiny_mlp").code(), StatusCode::kNotFound);
  auto index = m.Index();
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(index[0].state, ModelState::kUnavailable);
  EXPECT_EQ(index[0].reason, "unloaded");
}

TEST_F(ManagerTest, ABrokenModelIsReportedAndDoesNotStopTheOthers) {
  ASSERT_TRUE(zoo::WriteRepository(dir_.string(), {"bert_small"}).ok());
  std::ofstream(dir_ / "bert_small" / "1" / "model.onnx") << "not an onnx file";
  ManagerOptions o = Options();
  o.warmup = false;
  ModelManager m(o);
  auto results = m.LoadStartupModels();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].second.ok());  // bert_small (sorted first)
  EXPECT_TRUE(results[1].second.ok());
  EXPECT_FALSE(m.AllReady());
  EXPECT_TRUE(Infer(m, 1).status.ok());
  for (const auto& e : m.Index())
    if (e.name == "bert_small") {
      EXPECT_EQ(e.state, ModelState::kUnavailable);
      EXPECT_FALSE(e.reason.empty());
    }
}

TEST_F(ManagerTest, ServesEveryVersionTheVersionPolicySelects) {
  fs::copy(dir_ / "tiny_mlp" / "1", dir_ / "tiny_mlp" / "3", fs::copy_options::recursive);
  WriteConfig("name: \"tiny_mlp\" max_batch_size: 8 version_policy { all {} }");
  ModelManager m(Options());
  ASSERT_TRUE(m.Load("tiny_mlp").ok());
  EXPECT_EQ(m.ReadyVersions("tiny_mlp"), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(Infer(m, 1, 1.0f, 1).version, 1);
  EXPECT_EQ(Infer(m, 1, 1.0f, 0).version, 3);  // unspecified: the newest
}

TEST(LayoutSteps, ResizeOnTheSameGpuThenAddThenRemove) {
  auto gpu = [](int index, int g, int sms, bool confined = true, int cap = 0) {
    InstanceSlice i;
    i.index = index;
    i.gpu = g;
    i.sms = sms;
    i.confined = confined;
    i.own_max_batch = cap;
    return i;
  };
  using K = LayoutStep::Kind;
  // Instance 0 (GPU 0, 8 SMs) grows to 16 with a limit; GPU 1 gets a new one; instance 3 on
  // GPU 2 is not wanted and goes last.
  auto steps = LayoutSteps({gpu(0, 0, 8), gpu(3, 2, 8)}, {{0, 16, 4}, {1, 24, 0}});
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].kind, K::kChange);
  EXPECT_EQ(steps[0].index, 0);
  EXPECT_EQ(steps[0].size_was, 8);
  EXPECT_EQ(steps[0].target.size, 16);
  EXPECT_EQ(steps[0].target.own_max_batch, 4);
  EXPECT_EQ(steps[1].kind, K::kAdd);
  EXPECT_EQ(steps[1].target.gpu, 1);
  EXPECT_EQ(steps[1].target.size, 24);
  EXPECT_EQ(steps[2].kind, K::kRemove);
  EXPECT_EQ(steps[2].index, 3);
  // Already as wanted: nothing. Only the limit differs: a change that keeps the size.
  EXPECT_TRUE(LayoutSteps({gpu(0, 0, 16, true, 4)}, {{0, 16, 4}}).empty());
  steps = LayoutSteps({gpu(0, 0, 16, true, 4)}, {{0, 16, 0}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].target.size, 0);
  EXPECT_EQ(steps[0].target.own_max_batch, 0);
  // An instance unconfined on its whole GPU keeps its size.
  EXPECT_TRUE(LayoutSteps({gpu(0, 0, 132, false)}, {{0, 16, 0}}).empty());
  // CPU instances (GPU -1) are matched in order; their size is threads.
  InstanceSlice cpu;
  cpu.threads = 1;
  steps = LayoutSteps({cpu}, {{-1, 2, 0}, {-1, 1, 8}});
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].kind, K::kChange);
  EXPECT_EQ(steps[0].size_was, 1);
  EXPECT_EQ(steps[0].target.size, 2);
  EXPECT_EQ(steps[1].kind, K::kAdd);
  EXPECT_EQ(steps[1].target.own_max_batch, 8);
}

}  // namespace
}  // namespace tessera
