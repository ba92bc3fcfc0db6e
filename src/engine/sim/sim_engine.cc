// The sim backend: real shape inference, no arithmetic, latency from a profile on a Clock.
#include <nlohmann/json.hpp>

#include "engine/prepare.h"

namespace tessera {

Result<double> LatencyProfile::LatencyUs(int64_t batch) const {
  if (latency_us.empty()) return Status::FailedPrecondition("latency profile is empty");
  if (batch <= 0) return Status::InvalidArgument("batch must be >= 1");
  auto hi = latency_us.lower_bound(batch);
  if (hi != latency_us.end() && hi->first == batch) return hi->second;
  if (hi == latency_us.begin()) {  // below the smallest: scale down linearly through origin
    return hi->second * static_cast<double>(batch) / static_cast<double>(hi->first);
  }
  if (hi == latency_us.end()) {  // beyond the largest: extrapolate from the last two points
    auto last = std::prev(hi);
    if (last == latency_us.begin())
      return last->second * static_cast<double>(batch) / static_cast<double>(last->first);
    auto prev = std::prev(last);
    double slope = (last->second - prev->second) / static_cast<double>(last->first - prev->first);
    return last->second + slope * static_cast<double>(batch - last->first);
  }
  auto lo = std::prev(hi);
  double f = static_cast<double>(batch - lo->first) / static_cast<double>(hi->first - lo->first);
  return lo->second + f * (hi->second - lo->second);
}

Result<LatencyProfile> LatencyProfile::FromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("latency profile is not valid JSON");
  if (!j.is_object() || !j.contains("latency_us") || !j["latency_us"].is_object())
    return Status::InvalidArgument(
        "latency profile needs an object field 'latency_us' "
        "mapping batch size to microseconds");
  LatencyProfile p;
  for (auto& [k, v] : j["latency_us"].items()) {
    int64_t b = 0;
    try {
      b = std::stoll(k);
    } catch (...) {
      return Status::InvalidArgument("latency profile key '" + k + "' is not a batch size");
    }
    if (b <= 0 || !v.is_number() || v.get<double>() < 0)
      return Status::InvalidArgument("latency profile entry '" + k +
                                     "' must map a batch >= 1 to a latency >= 0");
    p.latency_us[b] = v.get<double>();
  }
  if (p.latency_us.empty()) return Status::InvalidArgument("latency profile has no entries");
  return p;
}

namespace {

class SimExecutable final : public Executable {
 public:
  SimExecutable(ExecutableInfo info, double latency_us, Clock* clock)
      : info_(std::move(info)),
        latency_ns_(static_cast<int64_t>(latency_us * 1000)),
        clock_(clock) {}
  Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) override {
    TESSERA_RETURN_IF_ERROR(CheckRunInputs(info_, inputs));
    clock_->SleepNs(latency_ns_);
    outputs->clear();
    for (const auto& o : info_.outputs) outputs->push_back(Tensor::Allocate(o.dtype, o.shape));
    return Status::OK();
  }
  const ExecutableInfo& info() const override { return info_; }

 private:
  ExecutableInfo info_;
  int64_t latency_ns_;
  Clock* clock_;
};

class SimEngine final : public Engine {
 public:
  SimEngine(LatencyProfile p, Clock* clock) : profile_(std::move(p)), clock_(clock) {}
  std::string name() const override { return "sim"; }
  Result<std::unique_ptr<Executable>> Compile(const Graph& graph,
                                              const CompileOptions& options) override {
    TESSERA_ASSIGN_OR_RETURN(PreparedGraph p, PrepareGraph(graph, options));
    TESSERA_ASSIGN_OR_RETURN(double us, profile_.LatencyUs(options.batch));
    ExecutableInfo info;
    DescribeIo(p, &info);
    info.weight_bytes = p.graph.WeightBytes();
    return std::unique_ptr<Executable>(
        std::make_unique<SimExecutable>(std::move(info), us, clock_));
  }

 private:
  LatencyProfile profile_;
  Clock* clock_;
};

}  // namespace

std::unique_ptr<Engine> CreateSimEngine(LatencyProfile profile, Clock* clock) {
  return std::make_unique<SimEngine>(std::move(profile), clock);
}

}  // namespace tessera
