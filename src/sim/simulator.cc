#include "tessera/sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <map>
#include <queue>
#include <random>

#include "tessera/bench/scenario.h"

namespace tessera::sim {
namespace {

using planner::Plan;
using planner::Profile;

constexpr double kNsPerMs = 1e6;
// 2^-8 relative error (0.4%) keeps each model's histogram small enough (~70 KiB) that thousands
// of them stay out of each other's way in the cache.
constexpr int kHistogramBits = 8;

// One model's queue on one slice: arrival times (ns), oldest first. One SLO per model, so the
// earliest deadline is always the front.
struct Queue {
  size_t model;
  int max_batch;
  std::deque<int64_t> arrivals;
  // The profile at this slice's size, by batch (index b, 1..max_batch), in ns: looked up on
  // every dispatch, so computed once.
  std::vector<int64_t> p99_ns;
  std::vector<double> mean_ms, std_ms;
};

struct SliceState {
  int gpu;
  double sms;
  std::vector<size_t> queues;
  size_t next = 0;  // round-robin position among the members
  bool running = false;
  double running_pressure = 0;  // its share of the GPU's bandwidth pressure while it runs
};

// Smooth weighted round-robin over a model's slices, in proportion to the plan's rates.
struct Router {
  std::vector<size_t> queues;
  std::vector<double> weight, current;
  double total = 0;
  size_t Pick() {
    if (queues.size() == 1) return queues[0];
    size_t best = 0;
    for (size_t i = 0; i < queues.size(); ++i) {
      current[i] += weight[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    return queues[best];
  }
};

struct Event {
  int64_t t;
  uint32_t id;
  bool completion;
  bool operator>(const Event& o) const {
    if (t != o.t) return t > o.t;
    if (completion != o.completion) return !completion;  // completions first
    return id > o.id;
  }
};

class Fleet {
 public:
  Fleet(const SimScenario& sc, const Plan& plan) : sc_(sc), rng_(sc.seed ^ 0x5151'7e55ull) {
    const auto& models = sc.plan.models;
    outcomes_.resize(models.size());
    routers_.resize(models.size());
    for (size_t i = 0; i < models.size(); ++i) {
      outcomes_[i].name = models[i].name;
      outcomes_[i].slo_ms = models[i].slo_ms;
      outcomes_[i].latency_ns = bench::Histogram(kHistogramBits);
      index_[models[i].name] = i;
    }
    gpu_pressure_.assign(plan.gpus.size(), 0);
    for (const auto& g : plan.gpus)
      for (const auto& s : g.slices) {
        SliceState st{g.index, s.sms, {}, 0, false, 0};
        for (const auto& m : s.members) {
          auto it = index_.find(m.model);
          if (it == index_.end()) {
            bad_ = "the plan names model '" + m.model + "', which the scenario lacks";
            return;
          }
          const Profile& p = sc.plan.models[it->second].profile;
          Queue q{it->second, m.max_batch, {}, {0}, {0}, {0}};
          for (int b = 1; b <= m.max_batch; ++b) {
            q.p99_ns.push_back(static_cast<int64_t>(p.P99Ms(b, s.sms) * kNsPerMs));
            q.mean_ms.push_back(p.MeanMs(b, s.sms));
            q.std_ms.push_back(p.StdMs(b, s.sms));
          }
          queues_.push_back(std::move(q));
          st.queues.push_back(queues_.size() - 1);
          queue_slice_.push_back(slices_.size());
          Router& r = routers_[it->second];
          r.queues.push_back(queues_.size() - 1);
          r.weight.push_back(m.rate_rps);
          r.current.push_back(0);
          r.total += m.rate_rps;
        }
        slices_.push_back(std::move(st));
      }
  }
  const std::string& bad() const { return bad_; }

  SimResult Run() {
    const auto wall0 = std::chrono::steady_clock::now();
    const int64_t end_ns = static_cast<int64_t>(sc_.duration_s * 1e9);
    warmup_ns_ = static_cast<int64_t>(sc_.warmup_s * 1e9);
    std::vector<std::unique_ptr<bench::ArrivalProcess>> arrivals;
    for (size_t m = 0; m < sc_.arrivals.size(); ++m) {
      bench::ArrivalSpec spec = sc_.arrivals[m];
      double scale = sc_.load;
      if (spec.kind != bench::ArrivalSpec::Kind::kTrace) {
        spec.rate *= sc_.load;
        scale = 1;
      }
      arrivals.push_back(bench::MakeArrivals(spec, sc_.seed * 1000003 + m, scale));
      const int64_t t = arrivals.back()->Next();
      if (t >= 0 && t < end_ns) events_.push({t, static_cast<uint32_t>(m), false});
    }
    SimResult res;
    while (!events_.empty()) {
      const Event e = events_.top();
      events_.pop();
      if (e.completion) {
        SliceState& s = slices_[e.id];
        s.running = false;
        gpu_pressure_[s.gpu] -= s.running_pressure;
        Dispatch(e.id, e.t);
        continue;
      }
      ++res.requests;
      const size_t m = e.id;
      const bool counted = e.t >= warmup_ns_;
      if (counted) ++outcomes_[m].sent;
      if (routers_[m].queues.empty()) {
        if (counted) ++outcomes_[m].dropped;  // unplaced: nowhere to run
      } else {
        const size_t q = routers_[m].Pick();
        queues_[q].arrivals.push_back(e.t);
        if (!slices_[queue_slice_[q]].running) Dispatch(queue_slice_[q], e.t);
      }
      const int64_t t = arrivals[m]->Next();
      if (t >= 0 && t < end_ns) events_.push({t, static_cast<uint32_t>(m), false});
    }
    res.batches = batches_;
    res.simulated_s = std::max(0.0, sc_.duration_s - sc_.warmup_s);
    res.total.name = "total";
    res.total.latency_ns = bench::Histogram(kHistogramBits);
    for (auto& o : outcomes_) {
      res.total.sent += o.sent;
      res.total.ok += o.ok;
      res.total.late += o.late;
      res.total.dropped += o.dropped;
      res.total.latency_ns.Merge(o.latency_ns);
    }
    res.models = std::move(outcomes_);
    res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    return res;
  }

 private:
  double Inflation(const SliceState& s) const {
    return sc_.plan.interference.Inflation(gpu_pressure_[s.gpu]);
  }

  // The slice is free at `now`: serve the next member (round-robin) that has work.
  void Dispatch(size_t si, int64_t now) {
    SliceState& s = slices_[si];
    const double f = Inflation(s);
    for (size_t k = 0; k < s.queues.size(); ++k) {
      const size_t pos = (s.next + k) % s.queues.size();
      Queue& q = queues_[s.queues[pos]];
      if (q.arrivals.empty()) continue;
      const auto& model = sc_.plan.models[q.model];
      const Profile& p = model.profile;
      const int64_t slo_ns = static_cast<int64_t>(model.slo_ms * kNsPerMs);
      auto predict = [&](int b) { return static_cast<int64_t>(q.p99_ns[b] * f); };
      // Drop before dispatch what can no longer make its deadline.
      const int64_t one = predict(1);
      while (!q.arrivals.empty() && q.arrivals.front() + slo_ns < now + one) {
        if (q.arrivals.front() >= warmup_ns_) ++outcomes_[q.model].dropped;
        q.arrivals.pop_front();
      }
      if (q.arrivals.empty()) continue;
      int b = static_cast<int>(std::min<size_t>(q.arrivals.size(), q.max_batch));
      while (b > 1 && now + predict(b) > q.arrivals.front() + slo_ns) --b;
      const double mean = q.mean_ms[b], sd = q.std_ms[b];
      double ms = mean;
      if (sd > 0) ms = std::max(0.5 * mean, std::normal_distribution<double>(mean, sd)(rng_));
      const int64_t done = now + static_cast<int64_t>(ms * f * kNsPerMs);
      ModelOutcome& o = outcomes_[q.model];
      for (int i = 0; i < b; ++i) {
        const int64_t a = q.arrivals.front();
        q.arrivals.pop_front();
        if (a < warmup_ns_) continue;
        const int64_t lat = done - a;
        o.latency_ns.Record(lat);
        if (lat <= slo_ns)
          ++o.ok;
        else
          ++o.late;
      }
      ++batches_;
      s.next = (pos + 1) % s.queues.size();
      s.running = true;
      s.running_pressure = p.mem_intensity * s.sms / sc_.plan.gpu.sms;
      gpu_pressure_[s.gpu] += s.running_pressure;
      events_.push({done, static_cast<uint32_t>(si), true});
      return;
    }
  }

  const SimScenario& sc_;
  std::mt19937_64 rng_;
  std::map<std::string, size_t> index_;
  std::vector<ModelOutcome> outcomes_;
  std::vector<Router> routers_;
  std::vector<Queue> queues_;
  std::vector<size_t> queue_slice_;
  std::vector<SliceState> slices_;
  std::vector<double> gpu_pressure_;  // sum over its running slices
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  int64_t warmup_ns_ = 0;
  int64_t batches_ = 0;
  std::string bad_;
};

}  // namespace

Result<SimResult> Simulate(const SimScenario& scenario, const Plan& plan) {
  if (scenario.arrivals.size() != scenario.plan.models.size())
    return Status::InvalidArgument("simulate: one arrival process per model is needed");
  if (!(scenario.duration_s > scenario.warmup_s) || scenario.warmup_s < 0)
    return Status::InvalidArgument("simulate: expected 0 <= warmup_s < duration_s");
  if (!(scenario.load > 0)) return Status::InvalidArgument("simulate: load must be > 0");
  Fleet fleet(scenario, plan);
  if (!fleet.bad().empty()) return Status::InvalidArgument("simulate: " + fleet.bad());
  return fleet.Run();
}

Result<SimScenario> ParseSimScenario(const nlohmann::json& doc, const std::string& what,
                                     const std::string& base_dir) {
  using json_fields::Bad;
  using json_fields::GetInt;
  using json_fields::GetNumber;
  if (!doc.is_object()) return Bad(what, "a JSON object", doc);
  static const char* kSimKeys[] = {"duration_s", "warmup_s", "seed", "load"};
  static const char* kArrivalKeys[] = {"arrival",          "cv",
                                       "burst_ratio",      "burst_fraction",
                                       "burst_period_s",   "diurnal_amplitude",
                                       "diurnal_period_s", "trace",
                                       "trace_loop"};
  SimScenario sc;
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "duration_s", what, &sc.duration_s, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "warmup_s", what, &sc.warmup_s, 0, true));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "load", what, &sc.load, 0));
  int64_t seed = 1;
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "seed", what, &seed, 0));
  sc.seed = static_cast<uint64_t>(seed);
  if (sc.warmup_s >= sc.duration_s)
    return Status::InvalidArgument(what + ".warmup_s: must be below duration_s");
  // The rest is a plan input once the simulator's own fields are taken out.
  nlohmann::json plan_doc = doc;
  for (const char* k : kSimKeys) plan_doc.erase(k);
  std::vector<nlohmann::json> arrival_docs;
  if (plan_doc.contains("models") && plan_doc["models"].is_array()) {
    auto& models = plan_doc["models"];
    for (size_t i = 0; i < models.size(); ++i) {
      nlohmann::json a = nlohmann::json::object();
      if (models[i].is_object()) {
        for (const char* k : kArrivalKeys)
          if (models[i].contains(k)) {
            a[k] = models[i][k];
            models[i].erase(k);
          }
        const bool trace = a.contains("arrival") && a["arrival"] == "trace";
        if (!trace && models[i].contains("rate")) a["rate"] = models[i]["rate"];
        const std::string at = what + ".models[" + std::to_string(i) + "]";
        bench::ArrivalSpec spec;
        TESSERA_RETURN_IF_ERROR(bench::ParseArrival(a, at, base_dir, &spec, nullptr));
        if (trace) {
          if (models[i].contains("rate"))
            return Status::InvalidArgument(at +
                                           ".rate: not used with arrival \"trace\" (the "
                                           "trace sets the rate)");
          models[i]["rate"] = spec.rate;
        }
        sc.arrivals.push_back(std::move(spec));
      }
    }
  }
  TESSERA_ASSIGN_OR_RETURN(sc.plan, planner::ParsePlanInput(plan_doc, what, base_dir));
  if (sc.arrivals.size() != sc.plan.models.size())
    return Status::InvalidArgument(what + ".models: every model needs an object");
  return sc;
}

Result<SimScenario> LoadSimScenario(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(auto doc, json_fields::ReadDocument(path));
  return ParseSimScenario(doc, path, std::filesystem::path(path).parent_path().string());
}

}  // namespace tessera::sim
