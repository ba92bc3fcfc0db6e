#include "tessera/bench/loadgen.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "bench/transport.h"

namespace tessera::bench {

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void SleepUntilNs(int64_t abs_ns, int64_t spin_ns) {
  const int64_t wake = abs_ns - spin_ns;
  if (wake > MonotonicNs()) {
    timespec ts{static_cast<time_t>(wake / 1000000000), static_cast<long>(wake % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }
  while (MonotonicNs() < abs_ns) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
}

void UsePreciseTimers() { prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); }

// ---------------------------------------------------------------------------------------------
Scheduler::Scheduler(const Scenario& s, double rate_scale, int64_t end_ns) : end_ns_(end_ns) {
  for (size_t i = 0; i < s.models.size(); ++i) {
    // Each model gets its own stream of random numbers from the scenario's seed.
    procs_.push_back(
        MakeArrivals(s.models[i].arrival, s.seed * 1000003 + i * 7919 + 1, rate_scale));
    Push(static_cast<int>(i));
  }
}

void Scheduler::Push(int model) {
  const int64_t t = procs_[model]->Next();
  if (t >= 0 && t < end_ns_) heap_.push({t, model});
}

std::pair<int, int64_t> Scheduler::Pop() {
  const Item it = heap_.top();
  heap_.pop();
  Push(it.model);
  return {it.model, it.due_ns};
}

// ---------------------------------------------------------------------------------------------
bool IsRejection(const std::string& kind) {
  return kind == "http_429" || kind == "http_503" || kind == "http_504" ||
         kind == "grpc_RESOURCE_EXHAUSTED" || kind == "grpc_UNAVAILABLE" ||
         kind == "grpc_DEADLINE_EXCEEDED";
}

Recorder::Recorder(const Scenario& s, double rate_scale)
    : warmup_ns_(static_cast<int64_t>(s.warmup_s * 1e9)),
      end_ns_(static_cast<int64_t>((s.warmup_s + s.duration_s) * 1e9)) {
  const size_t seconds = static_cast<size_t>(std::ceil(s.warmup_s + s.duration_s)) + 1;
  for (const auto& m : s.models) {
    auto pm = std::make_unique<PerModel>();
    pm->r.name = m.name;
    pm->r.slo_ms = m.slo_ms;
    pm->r.offered_rps = m.arrival.rate * rate_scale;
    pm->r.duration_s = s.duration_s;
    pm->r.warmup_s = s.warmup_s;
    pm->r.timeline.resize(seconds);
    pm->slo_ns = static_cast<int64_t>(m.slo_ms * 1e6);
    models_.push_back(std::move(pm));
  }
}

void Recorder::Sent(int model, int64_t due_ns, int64_t sent_ns) {
  sent_.fetch_add(1, std::memory_order_relaxed);
  PerModel& pm = *models_[model];
  std::lock_guard<std::mutex> l(pm.mu);
  const size_t sec = static_cast<size_t>(due_ns / 1000000000);
  if (sec < pm.r.timeline.size()) ++pm.r.timeline[sec].sent;
  if (!Measured(due_ns)) return;
  ++pm.r.sent;
  pm.r.send_lag_ns.Record(sent_ns - due_ns);
}

void Recorder::Done(int model, int64_t due_ns, int64_t done_ns, const Outcome& o) {
  done_.fetch_add(1, std::memory_order_relaxed);
  PerModel& pm = *models_[model];
  const int64_t latency = done_ns - due_ns;
  const bool good = o.ok && latency <= pm.slo_ns;
  std::lock_guard<std::mutex> l(pm.mu);
  const size_t sec = static_cast<size_t>(due_ns / 1000000000);
  if (sec < pm.r.timeline.size()) {
    pm.r.timeline[sec].ok += o.ok;
    pm.r.timeline[sec].within_slo += good;
  }
  if (!Measured(due_ns)) return;
  measured_done_.fetch_add(1, std::memory_order_relaxed);
  if (good) measured_good_.fetch_add(1, std::memory_order_relaxed);
  if (o.ok) {
    ++pm.r.ok;
    pm.r.within_slo += good;
    pm.r.latency_ns.Record(latency);
    return;
  }
  ++pm.r.errors_by_kind[o.kind];
  if (o.kind == "no_response") ++pm.r.unanswered;
  if (IsRejection(o.kind)) {
    ++pm.r.rejected;
  } else {
    ++pm.r.errors;
  }
  if (pm.r.first_error.empty()) pm.r.first_error = o.kind + ": " + o.message;
}

std::vector<ModelResult> Recorder::Results() const {
  std::vector<ModelResult> out;
  for (const auto& pm : models_) {
    std::lock_guard<std::mutex> l(pm->mu);
    out.push_back(pm->r);
  }
  return out;
}

ModelResult Recorder::Total() const {
  ModelResult t;
  t.name = "total";
  bool first = true;
  for (const auto& m : Results()) {
    t.offered_rps += m.offered_rps;
    t.sent += m.sent;
    t.ok += m.ok;
    t.within_slo += m.within_slo;
    t.rejected += m.rejected;
    t.errors += m.errors;
    t.unanswered += m.unanswered;
    for (const auto& [k, v] : m.errors_by_kind) t.errors_by_kind[k] += v;
    if (t.first_error.empty()) t.first_error = m.first_error;
    t.latency_ns.Merge(m.latency_ns);
    t.send_lag_ns.Merge(m.send_lag_ns);
    t.duration_s = m.duration_s;
    t.warmup_s = m.warmup_s;
    if (first) t.timeline.resize(m.timeline.size());
    first = false;
    for (size_t i = 0; i < m.timeline.size() && i < t.timeline.size(); ++i) {
      t.timeline[i].sent += m.timeline[i].sent;
      t.timeline[i].ok += m.timeline[i].ok;
      t.timeline[i].within_slo += m.timeline[i].within_slo;
    }
  }
  return t;
}

bool RunResult::Held(double target) const {
  for (const auto& m : models)
    if (m.attainment() < target) return false;
  return !models.empty();
}

// ---------------------------------------------------------------------------------------------
namespace {

size_t DtypeSize(const std::string& dt) {
  if (dt == "BOOL" || dt == "INT8" || dt == "UINT8") return 1;
  if (dt == "INT16" || dt == "UINT16" || dt == "FP16" || dt == "BF16") return 2;
  if (dt == "INT32" || dt == "UINT32" || dt == "FP32") return 4;
  if (dt == "INT64" || dt == "UINT64" || dt == "FP64") return 8;
  return 0;
}

std::string ShapeText(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) t += ',';
    t += std::to_string(s[i]);
  }
  t += ']';
  return t;
}

// Random but deterministic input bytes: floats in [0, 1), integers and booleans 0 or 1 (valid
// token ids, masks and indices for any model).
std::string MakeData(const std::string& dt, size_t count, std::mt19937_64& rng) {
  std::string out(count * DtypeSize(dt), '\0');
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (size_t i = 0; i < count; ++i) {
    if (dt == "FP32") {
      const float v = u(rng);
      std::memcpy(&out[i * 4], &v, 4);
    } else if (dt == "FP64") {
      const double v = u(rng);
      std::memcpy(&out[i * 8], &v, 8);
    } else if (dt == "FP16" || dt == "BF16") {
      // 0.0 .. ~1.0: small positive values in both encodings.
      const uint16_t v = dt == "FP16" ? static_cast<uint16_t>(0x3000 + (rng() & 0x3ff))
                                      : static_cast<uint16_t>(0x3e00 + (rng() & 0x7f));
      std::memcpy(&out[i * 2], &v, 2);
    } else {
      out[i * DtypeSize(dt)] = static_cast<char>(rng() & 1);  // little-endian 0 / 1
    }
  }
  return out;
}

Result<PreparedModel> PrepareModel(const ModelLoad& load, const ModelMeta& meta,
                                   std::mt19937_64& rng) {
  PreparedModel p;
  p.name = load.name;
  p.version = load.version;
  p.priority = load.priority;
  const std::string who = "model '" + load.name + "'";
  for (const auto& [name, dims] : load.shapes) {
    bool found = false;
    for (const auto& in : meta.inputs) found |= in.name == name;
    if (!found)
      return Status::InvalidArgument("scenario gives a shape for input '" + name + "' but " + who +
                                     " has no such input");
  }
  for (const auto& in : meta.inputs) {
    if (DtypeSize(in.datatype) == 0)
      return Status::Unimplemented(who + ", input '" + in.name + "': datatype " + in.datatype +
                                   " is not supported by tessera bench");
    const bool batched = !in.shape.empty() && in.shape[0] == -1;
    if (!batched && load.batch != 1)
      return Status::InvalidArgument(who + " does not batch (input '" + in.name + "' has shape " +
                                     ShapeText(in.shape) + "); its batch must be 1");
    std::vector<int64_t> shape;
    auto given = load.shapes.find(in.name);
    if (given != load.shapes.end()) {
      if (batched) shape.push_back(load.batch);
      shape.insert(shape.end(), given->second.begin(), given->second.end());
    } else {
      for (size_t d = 0; d < in.shape.size(); ++d) {
        if (d == 0 && batched) {
          shape.push_back(load.batch);
        } else if (in.shape[d] < 0) {
          return Status::InvalidArgument(who + ", input '" + in.name +
                                         "' has a variable dim (shape " + ShapeText(in.shape) +
                                         "); give its shape in the scenario: \"inputs\": {\"" +
                                         in.name + "\": [dims without the batch dim]}");
        } else {
          shape.push_back(in.shape[d]);
        }
      }
    }
    size_t count = 1;
    for (auto d : shape) count *= static_cast<size_t>(d);
    PreparedModel::Input pin;
    pin.name = in.name;
    pin.datatype = in.datatype;
    pin.shape = shape;
    pin.data = MakeData(in.datatype, count, rng);
    p.inputs.push_back(std::move(pin));
  }
  return p;
}

// A POSIX shared-memory object holding every model's inputs, registered with the server.
class ShmRegion {
 public:
  ~ShmRegion() {
    if (transport_) (void)transport_->UnregisterShm(name_);
    if (!key_.empty()) shm_unlink(key_.c_str());
  }
  Status Create(Transport* t, std::vector<PreparedModel>* models) {
    key_ = "/tessera_bench_" + std::to_string(getpid());
    name_ = "tessera_bench_" + std::to_string(getpid());
    uint64_t total = 0;
    for (auto& m : *models)
      for (auto& in : m.inputs) {
        in.shm_offset = total;
        total += (in.data.size() + 63) / 64 * 64;
      }
    const int fd = shm_open(key_.c_str(), O_CREAT | O_RDWR | O_EXCL, 0600);
    if (fd < 0) {
      const std::string err = strerror(errno);
      key_.clear();
      return Status::Internal("shm_open: " + err);
    }
    if (ftruncate(fd, static_cast<off_t>(std::max<uint64_t>(total, 64))) != 0) {
      close(fd);
      return Status::Internal(std::string("ftruncate: ") + strerror(errno));
    }
    void* p =
        mmap(nullptr, std::max<uint64_t>(total, 64), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return Status::Internal(std::string("mmap: ") + strerror(errno));
    for (auto& m : *models) {
      m.shm_region = name_;
      for (auto& in : m.inputs)
        std::memcpy(static_cast<char*>(p) + in.shm_offset, in.data.data(), in.data.size());
    }
    munmap(p, std::max<uint64_t>(total, 64));
    auto st = t->RegisterShm(name_, key_, std::max<uint64_t>(total, 64));
    if (!st.ok()) return st;
    transport_ = t;
    return Status::OK();
  }

 private:
  Transport* transport_ = nullptr;
  std::string key_, name_;
};

void ProgressLoop(const Recorder& rec, const Scenario& s, const RunOptions& opt, int64_t t0,
                  const std::atomic<bool>& stop, std::mutex& mu, std::condition_variable& cv) {
  const bool tty = isatty(fileno(stderr));
  const int64_t every_ns = tty ? 1000000000LL : 5000000000LL;
  const double total_s = s.warmup_s + s.duration_s;
  int64_t next = t0 + every_ns;
  std::unique_lock<std::mutex> l(mu);
  while (!stop.load()) {
    cv.wait_for(l, std::chrono::nanoseconds(std::max<int64_t>(0, next - MonotonicNs())));
    if (stop.load()) break;
    if (MonotonicNs() < next) continue;
    next += every_ns;
    const double t = (MonotonicNs() - t0) / 1e9;
    const int64_t sent = rec.sent_total(), done = rec.done_total();
    const int64_t md = rec.measured_done(), mg = rec.measured_within_slo();
    char att[32] = "warming up";
    if (md > 0) std::snprintf(att, sizeof att, "%.2f%%", 100.0 * mg / md);
    std::fprintf(stderr,
                 "%s%s%5.1f/%.0f s  offered %.0f req/s  sent %lld  in flight %lld  "
                 "SLO attainment %s%s",
                 tty ? "\r" : "", opt.progress_prefix.c_str(), std::min(t, total_s), total_s,
                 s.OfferedRate() * opt.rate_scale, static_cast<long long>(sent),
                 static_cast<long long>(sent - done), att, tty ? "   " : "\n");
    std::fflush(stderr);
  }
  if (tty) std::fprintf(stderr, "\n");
}

}  // namespace

Result<RunResult> RunScenario(const Scenario& s, const RunOptions& opt) {
  std::unique_ptr<Transport> transport;
  if (s.protocol == "http") {
    auto t = MakeHttpTransport(s.EffectiveUrl(), s.binary, s.connections, opt.spin_ns);
    if (!t.ok()) return t.status();
    transport = std::move(*t);
  } else {
    transport = MakeGrpcTransport(s.EffectiveUrl(), opt.grpc_threads, opt.spin_ns, opt.grpc_stream);
  }
  std::mt19937_64 rng(s.seed);
  std::vector<PreparedModel> prepared;
  for (const auto& m : s.models) {
    auto meta = transport->Metadata(m.name, m.version);
    if (!meta.ok()) return meta.status();
    auto p = PrepareModel(m, *meta, rng);
    if (!p.ok()) return p.status();
    prepared.push_back(std::move(*p));
  }
  ShmRegion shm;
  if (s.shared_memory) {
    auto st = shm.Create(transport.get(), &prepared);
    if (!st.ok()) return st;
  }
  auto st = transport->Prepare(prepared);
  if (!st.ok()) return st;

  Recorder rec(s, opt.rate_scale);
  const int64_t end_ns = static_cast<int64_t>((s.warmup_s + s.duration_s) * 1e9);
  Scheduler sched(s, opt.rate_scale, end_ns);
  const int64_t t0 = MonotonicNs() + 1000000;  // 1 ms to get going
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  std::thread progress;
  if (opt.progress) progress = std::thread([&] { ProgressLoop(rec, s, opt, t0, stop, mu, cv); });
  transport->Run(sched, rec, t0, static_cast<int64_t>(s.drain_s * 1e9));
  const double wall = (MonotonicNs() - t0) / 1e9;
  if (progress.joinable()) {
    {
      std::lock_guard<std::mutex> l(mu);
      stop = true;
    }
    cv.notify_all();
    progress.join();
  }
  RunResult r;
  r.rate_scale = opt.rate_scale;
  r.offered_rps = s.OfferedRate() * opt.rate_scale;
  r.wall_s = wall;
  r.models = rec.Results();
  r.total = rec.Total();
  return r;
}

// ---------------------------------------------------------------------------------------------
namespace {
double Ms(int64_t ns) { return ns / 1e6; }
}  // namespace

std::string ModelResultJson(const ModelResult& m, bool with_series) {
  using nlohmann::json;
  const auto& h = m.latency_ns;
  json j = {{"name", m.name},
            {"offered_rps", m.offered_rps},
            {"sent", m.sent},
            {"ok", m.ok},
            {"within_slo", m.within_slo},
            {"rejected", m.rejected},
            {"errors", m.errors},
            {"unanswered", m.unanswered},
            {"errors_by_kind", m.errors_by_kind},
            {"throughput_rps", m.throughput_rps()},
            {"goodput_rps", m.goodput_rps()},
            {"slo_attainment", m.attainment()},
            {"p50_ms", Ms(h.Percentile(50))},
            {"p90_ms", Ms(h.Percentile(90))},
            {"p99_ms", Ms(h.Percentile(99))},
            {"p999_ms", Ms(h.Percentile(99.9))},
            {"mean_ms", h.mean() / 1e6},
            {"min_ms", Ms(h.min())},
            {"max_ms", Ms(h.max())},
            {"send_lag_p50_ms", Ms(m.send_lag_ns.Percentile(50))},
            {"send_lag_p99_ms", Ms(m.send_lag_ns.Percentile(99))}};
  if (m.name != "total") j["slo_ms"] = m.slo_ms;
  if (!m.first_error.empty()) j["first_error"] = m.first_error;
  if (with_series) {
    json cdf = json::array();
    for (const auto& [v, f] : h.Cdf(200)) cdf.push_back({Ms(v), f});
    j["latency_cdf_ms"] = cdf;
    json tl = json::array();
    for (size_t i = 0; i < m.timeline.size(); ++i) {
      const auto& s = m.timeline[i];
      if (i >= m.warmup_s + m.duration_s && s.sent == 0) continue;
      tl.push_back({{"t_s", i},
                    {"sent", s.sent},
                    {"ok", s.ok},
                    {"within_slo", s.within_slo},
                    {"attainment", s.sent ? static_cast<double>(s.within_slo) / s.sent : 1.0},
                    {"warmup", i < m.warmup_s}});
    }
    j["timeline"] = tl;
  }
  return j.dump();
}

std::string RunResultJson(const RunResult& r, bool with_series) {
  using nlohmann::json;
  json models = json::array();
  for (const auto& m : r.models) models.push_back(json::parse(ModelResultJson(m, with_series)));
  json j = {{"rate_scale", r.rate_scale},
            {"offered_rps", r.offered_rps},
            {"wall_s", r.wall_s},
            {"models", models},
            {"total", json::parse(ModelResultJson(r.total, with_series))}};
  return j.dump();
}

}  // namespace tessera::bench
