// A load scenario for `tessera bench`: which server, which protocol, and per model the offered
// rate, arrival process, SLO, batch and input shapes. Read from JSON (examples in
// bench/scenarios/); every error names the field that is wrong and what was expected.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/bench/arrivals.h"
#include "tessera/core/status.h"

namespace tessera::bench {

struct ModelLoad {
  std::string name;
  std::string version;  // empty: the server's choice
  ArrivalSpec arrival;
  double slo_ms = 0;  // > 0: a request answered later (or not OK) misses the SLO
  int batch = 1;      // batch size of each request (the leading dim of every input)
  // Per-item shape (without the batch dim) of inputs whose metadata shape has dynamic dims.
  std::map<std::string, std::vector<int64_t>> shapes;
  int priority = 0;  // sent as the request's `priority` parameter when > 0
  std::string trace_file;
};

struct Scenario {
  std::string name = "scenario";
  std::string protocol = "grpc";  // "grpc" or "http"
  std::string url;                // host:port; empty: localhost:8001 (grpc) / localhost:8000 (http)
  bool binary = true;             // http: binary tensor extension (false: JSON tensors)
  bool shared_memory = false;     // inputs through system shared memory (same host only)
  double duration_s = 10;         // measured part of the run
  double warmup_s = 2;            // sent but not counted, before it
  double drain_s = 10;            // after the last send, how long to wait for answers
  uint64_t seed = 1;
  int connections = 64;  // http: at most this many connections (one request in flight on each)
  std::vector<ModelLoad> models;

  std::string DefaultUrl() const {
    return protocol == "http" ? "localhost:8000" : "localhost:8001";
  }
  std::string EffectiveUrl() const { return url.empty() ? DefaultUrl() : url; }
  double OfferedRate() const;  // sum of the models' mean rates
};

// The arrival fields of one model object ("arrival", "rate", "cv", "burst_*", "diurnal_*",
// "trace", "trace_loop"), shared by every file that describes load (bench and simulator
// scenarios). Errors name `where`.<field>; `base_dir` resolves a relative trace path, whose text
// goes to *trace_file when given.
Status ParseArrival(const nlohmann::json& model, const std::string& where,
                    const std::string& base_dir, ArrivalSpec* spec, std::string* trace_file);

// `base_dir` resolves relative trace paths.
Result<Scenario> ParseScenario(const std::string& json_text, const std::string& what,
                               const std::string& base_dir = ".");
Result<Scenario> LoadScenario(const std::string& path);
// The built-in demo mix: the zoo-demo models at rates a 2-core CPU server holds.
Scenario DemoScenario();
// The scenario as JSON (for result files), after defaults.
std::string ScenarioToJson(const Scenario& s);

}  // namespace tessera::bench
