#include "tessera/bench/scenario.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tessera/core/json_fields.h"

namespace tessera::bench {
namespace {

using nlohmann::json;

using json_fields::Bad;
using json_fields::CheckKeys;
using json_fields::GetBool;
using json_fields::GetInt;
using json_fields::GetNumber;
using json_fields::GetString;

}  // namespace

Status ParseArrival(const nlohmann::json& m, const std::string& where, const std::string& base,
                    ArrivalSpec* spec, std::string* trace_file) {
  ArrivalSpec& a = *spec;
  std::string arrival = "poisson";
  TESSERA_RETURN_IF_ERROR(GetString(m, "arrival", where, &arrival));
  auto kind = ParseKind(arrival);
  if (!kind.ok()) return Status::InvalidArgument(where + ".arrival: " + kind.status().message());
  a.kind = *kind;
  if (a.kind == ArrivalSpec::Kind::kTrace) {
    if (!m.contains("trace"))
      return Status::InvalidArgument(where + ": arrival \"trace\" needs 'trace' (a file of times)");
    std::string file;
    TESSERA_RETURN_IF_ERROR(GetString(m, "trace", where, &file));
    if (trace_file) *trace_file = file;
    std::filesystem::path p(file);
    if (p.is_relative()) p = std::filesystem::path(base) / p;
    auto times = ReadTraceFile(p.string());
    if (!times.ok()) return Status::InvalidArgument(where + ".trace: " + times.status().message());
    a.trace_ns = std::move(*times);
    TESSERA_RETURN_IF_ERROR(GetBool(m, "trace_loop", where, &a.trace_loop));
    const auto n = a.trace_ns.size();
    const double span_s = (a.trace_ns.back() - a.trace_ns.front()) / 1e9;
    a.rate = n > 1 && span_s > 0 ? (n - 1) / span_s : 1.0;
    if (m.contains("rate"))
      return Status::InvalidArgument(where + ".rate: not used with arrival \"trace\" (the trace " +
                                     "sets the rate; --rate-scale speeds it up)");
  } else {
    if (!m.contains("rate"))
      return Status::InvalidArgument(where + ": 'rate' (requests/s) is required");
    TESSERA_RETURN_IF_ERROR(GetNumber(m, "rate", where, &a.rate, 0));
    if (m.contains("trace"))
      return Status::InvalidArgument(where + ".trace: only used with arrival \"trace\"");
  }
  if (m.contains("cv") && a.kind != ArrivalSpec::Kind::kGamma)
    return Status::InvalidArgument(where + ".cv: only used with arrival \"gamma\"");
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "cv", where, &a.cv, 0, true));
  for (const char* k : {"burst_ratio", "burst_fraction", "burst_period_s"})
    if (m.contains(k) && a.kind != ArrivalSpec::Kind::kBursty)
      return Status::InvalidArgument(where + "." + k + ": only used with arrival \"bursty\"");
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "burst_ratio", where, &a.burst_ratio, 1, true));
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "burst_fraction", where, &a.burst_fraction, 0));
  if (a.burst_fraction >= 1)
    return Bad(where + ".burst_fraction", "a number in (0, 1)", m["burst_fraction"]);
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "burst_period_s", where, &a.burst_period_s, 0));
  for (const char* k : {"diurnal_amplitude", "diurnal_period_s", "diurnal_phase"})
    if (m.contains(k) && a.kind != ArrivalSpec::Kind::kDiurnal)
      return Status::InvalidArgument(where + "." + k + ": only used with arrival \"diurnal\"");
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "diurnal_amplitude", where, &a.diurnal_amplitude, 0, true));
  if (a.diurnal_amplitude >= 1)
    return Bad(where + ".diurnal_amplitude", "a number in [0, 1)", m["diurnal_amplitude"]);
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "diurnal_period_s", where, &a.diurnal_period_s, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "diurnal_phase", where, &a.diurnal_phase, 0, true));
  if (a.diurnal_phase >= 1)
    return Bad(where + ".diurnal_phase", "a number in [0, 1) (a fraction of the period)",
               m["diurnal_phase"]);
  return Status::OK();
}

namespace {

Result<ModelLoad> ParseModel(const json& m, const std::string& where, const std::string& base) {
  if (!m.is_object()) return Bad(where, "an object", m);
  TESSERA_RETURN_IF_ERROR(
      CheckKeys(m, where,
                {"name", "version", "rate", "slo_ms", "batch", "arrival", "cv", "burst_ratio",
                 "burst_fraction", "burst_period_s", "diurnal_amplitude", "diurnal_period_s",
                 "diurnal_phase", "trace", "trace_loop", "inputs", "priority"}));
  ModelLoad l;
  if (!m.contains("name")) return Status::InvalidArgument(where + ": 'name' is required");
  TESSERA_RETURN_IF_ERROR(GetString(m, "name", where, &l.name));
  if (l.name.empty()) return Status::InvalidArgument(where + ".name: must not be empty");
  if (m.contains("version")) {
    if (m["version"].is_number_integer() && m["version"].get<int64_t>() >= 1)
      l.version = std::to_string(m["version"].get<int64_t>());
    else
      TESSERA_RETURN_IF_ERROR(GetString(m, "version", where, &l.version));
  }
  TESSERA_RETURN_IF_ERROR(ParseArrival(m, where, base, &l.arrival, &l.trace_file));
  if (!m.contains("slo_ms"))
    return Status::InvalidArgument(where + ": 'slo_ms' (the latency SLO in ms) is required");
  TESSERA_RETURN_IF_ERROR(GetNumber(m, "slo_ms", where, &l.slo_ms, 0));
  int64_t batch = 1, priority = 0;
  TESSERA_RETURN_IF_ERROR(GetInt(m, "batch", where, &batch, 1));
  TESSERA_RETURN_IF_ERROR(GetInt(m, "priority", where, &priority, 0));
  l.batch = static_cast<int>(batch);
  l.priority = static_cast<int>(priority);
  if (m.contains("inputs")) {
    const json& in = m["inputs"];
    const std::string at = where + ".inputs";
    if (!in.is_object()) return Bad(at, "an object {input name: [dims]}", in);
    for (auto it = in.begin(); it != in.end(); ++it) {
      const std::string a = at + "." + it.key();
      if (!it.value().is_array()) return Bad(a, "an array of dims (without the batch dim)", *it);
      std::vector<int64_t> dims;
      for (const auto& d : it.value()) {
        if (!d.is_number_integer() || d.get<int64_t>() < 1)
          return Bad(a, "dims that are integers >= 1", d);
        dims.push_back(d.get<int64_t>());
      }
      l.shapes[it.key()] = dims;
    }
  }
  return l;
}

}  // namespace

double Scenario::OfferedRate() const {
  double r = 0;
  for (const auto& m : models) r += m.arrival.rate;
  return r;
}

Result<Scenario> ParseScenario(const std::string& text, const std::string& what,
                               const std::string& base_dir) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded())
    return Status::InvalidArgument(what + ": not valid JSON (a scenario is a JSON object; see " +
                                   "bench/scenarios/)");
  if (!doc.is_object()) return Bad(what, "a JSON object", doc);
  TESSERA_RETURN_IF_ERROR(
      CheckKeys(doc, what,
                {"name", "protocol", "url", "binary", "shared_memory", "duration_s", "warmup_s",
                 "drain_s", "seed", "connections", "models"}));
  Scenario s;
  TESSERA_RETURN_IF_ERROR(GetString(doc, "name", what, &s.name));
  TESSERA_RETURN_IF_ERROR(GetString(doc, "protocol", what, &s.protocol));
  if (s.protocol != "grpc" && s.protocol != "http")
    return Bad(what + ".protocol", "\"grpc\" or \"http\"", doc["protocol"]);
  TESSERA_RETURN_IF_ERROR(GetString(doc, "url", what, &s.url));
  TESSERA_RETURN_IF_ERROR(GetBool(doc, "binary", what, &s.binary));
  TESSERA_RETURN_IF_ERROR(GetBool(doc, "shared_memory", what, &s.shared_memory));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "duration_s", what, &s.duration_s, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "warmup_s", what, &s.warmup_s, 0, true));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "drain_s", what, &s.drain_s, 0, true));
  int64_t seed = 1, conns = s.connections;
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "seed", what, &seed, 0));
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "connections", what, &conns, 1));
  s.seed = static_cast<uint64_t>(seed);
  s.connections = static_cast<int>(conns);
  if (!doc.contains("models")) return Status::InvalidArgument(what + ": 'models' is required");
  const json& models = doc["models"];
  if (!models.is_array() || models.empty())
    return Bad(what + ".models", "a non-empty array of models", models);
  std::set<std::string> seen;
  for (size_t i = 0; i < models.size(); ++i) {
    const std::string where = what + ".models[" + std::to_string(i) + "]";
    auto m = ParseModel(models[i], where, base_dir);
    if (!m.ok()) return m.status();
    const std::string key = m->name + "/" + m->version;
    if (!seen.insert(key).second)
      return Status::InvalidArgument(where + ": model '" + m->name + "' is listed twice");
    s.models.push_back(std::move(*m));
  }
  return s;
}

Result<Scenario> LoadScenario(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::NotFound("cannot read scenario file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseScenario(ss.str(), path, std::filesystem::path(path).parent_path().string());
}

Scenario DemoScenario() {
  Scenario s;
  s.name = "demo-mix";
  auto add = [&](const char* name, double rate, double slo_ms, ArrivalSpec::Kind kind) {
    ModelLoad m;
    m.name = name;
    m.arrival.kind = kind;
    m.arrival.rate = rate;
    m.slo_ms = slo_ms;
    s.models.push_back(m);
  };
  add("tiny_mlp", 200, 10, ArrivalSpec::Kind::kPoisson);
  add("bert_small", 10, 150, ArrivalSpec::Kind::kPoisson);
  add("mobilenet_v2", 5, 250, ArrivalSpec::Kind::kBursty);
  add("resnet18", 2, 400, ArrivalSpec::Kind::kPoisson);
  return s;
}

std::string ScenarioToJson(const Scenario& s) {
  json models = json::array();
  for (const auto& m : s.models) {
    json j = {{"name", m.name},
              {"arrival", KindName(m.arrival.kind)},
              {"rate", m.arrival.rate},
              {"slo_ms", m.slo_ms},
              {"batch", m.batch}};
    if (!m.version.empty()) j["version"] = m.version;
    if (m.arrival.kind == ArrivalSpec::Kind::kGamma) j["cv"] = m.arrival.cv;
    if (m.arrival.kind == ArrivalSpec::Kind::kDiurnal) {
      j["diurnal_amplitude"] = m.arrival.diurnal_amplitude;
      j["diurnal_period_s"] = m.arrival.diurnal_period_s;
      if (m.arrival.diurnal_phase > 0) j["diurnal_phase"] = m.arrival.diurnal_phase;
    }
    if (m.arrival.kind == ArrivalSpec::Kind::kBursty) {
      j["burst_ratio"] = m.arrival.burst_ratio;
      j["burst_fraction"] = m.arrival.burst_fraction;
      j["burst_period_s"] = m.arrival.burst_period_s;
    }
    if (m.arrival.kind == ArrivalSpec::Kind::kTrace) {
      j["trace"] = m.trace_file;
      j["trace_loop"] = m.arrival.trace_loop;
      j.erase("rate");
    }
    if (!m.shapes.empty()) j["inputs"] = m.shapes;
    if (m.priority > 0) j["priority"] = m.priority;
    models.push_back(j);
  }
  json doc = {{"name", s.name},
              {"protocol", s.protocol},
              {"url", s.EffectiveUrl()},
              {"binary", s.binary},
              {"shared_memory", s.shared_memory},
              {"duration_s", s.duration_s},
              {"warmup_s", s.warmup_s},
              {"drain_s", s.drain_s},
              {"seed", s.seed},
              {"connections", s.connections},
              {"models", models}};
  return doc.dump();
}

}  // namespace tessera::bench
