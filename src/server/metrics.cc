#include "server/metrics.h"

#include <fmt/format.h>

#include <functional>
#include <set>

namespace tessera::server {
namespace {

struct Series {
  const char* name;
  const char* type;
  const char* help;
  std::function<double(const ModelStatsSnapshot&)> value;
};

std::string Labels(const ModelStatsSnapshot& s) {
  return fmt::format("model=\"{}\",version=\"{}\"", s.name, s.version);
}

}  // namespace

std::string PrometheusText(const ModelManager& manager) {
  auto stats = manager.Stats("", 0);
  std::vector<ModelStatsSnapshot> snaps = stats.ok() ? *stats : std::vector<ModelStatsSnapshot>{};
  std::string out;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  const std::vector<Series> series = {
      {"nv_inference_request_success", "counter",
       "Number of successful inference requests, all batch sizes",
       [](const auto& s) { return double(s.success.count); }},
      {"nv_inference_request_failure", "counter",
       "Number of failed inference requests, all batch sizes",
       [](const auto& s) { return double(s.fail.count); }},
      {"nv_inference_count", "counter", "Number of inferences performed (a batch of n counts n)",
       [](const auto& s) { return double(s.inference_count); }},
      {"nv_inference_exec_count", "counter", "Number of model executions (batches) performed",
       [](const auto& s) { return double(s.execution_count); }},
      {"nv_inference_request_duration_us", "counter",
       "Cumulative inference request duration in microseconds (queue and compute)",
       [us](const auto& s) { return us(s.success.ns); }},
      {"nv_inference_queue_duration_us", "counter",
       "Cumulative inference queuing duration in microseconds",
       [us](const auto& s) { return us(s.queue.ns); }},
      {"nv_inference_compute_input_duration_us", "counter",
       "Cumulative compute input duration in microseconds",
       [us](const auto& s) { return us(s.compute_input.ns); }},
      {"nv_inference_compute_infer_duration_us", "counter",
       "Cumulative compute inference duration in microseconds",
       [us](const auto& s) { return us(s.compute_infer.ns); }},
      {"nv_inference_compute_output_duration_us", "counter",
       "Cumulative inference compute output duration in microseconds",
       [us](const auto& s) { return us(s.compute_output.ns); }},
      {"tessera_slo_met_total", "counter",
       "Successful requests answered within the model's slo_ms (models with an SLO)",
       [](const auto& s) { return double(s.slo_met); }},
      {"tessera_slo_missed_total", "counter",
       "Requests failed, dropped or answered after the model's slo_ms (models with an SLO)",
       [](const auto& s) { return double(s.slo_missed); }},
      {"tessera_slo_attainment", "gauge",
       "Fraction of requests within the SLO since load (1 when none yet)",
       [](const auto& s) {
         const double n = double(s.slo_met + s.slo_missed);
         return n > 0 ? double(s.slo_met) / n : 1.0;
       }},
      {"tessera_queue_depth", "gauge", "Requests waiting in the model's queue",
       [](const auto& s) { return double(s.queue_depth); }},
      {"tessera_model_memory_bytes", "gauge",
       "Memory the model version holds: weights and the activation arenas of its executables",
       [](const auto& s) { return double(s.memory_bytes); }},
  };
  for (const auto& ser : series) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", ser.name, ser.help, ser.name, ser.type);
    for (const auto& s : snaps)
      out += fmt::format("{}{{{}}} {}\n", ser.name, Labels(s), ser.value(s));
  }
  out +=
      "# HELP tessera_rejected_total Requests refused or dropped by the scheduler, by reason\n"
      "# TYPE tessera_rejected_total counter\n";
  for (const auto& s : snaps)
    for (size_t i = 0; i < s.rejects.size(); ++i)
      out += fmt::format("tessera_rejected_total{{{},reason=\"{}\"}} {}\n", Labels(s),
                         RejectReasonName(static_cast<RejectReason>(i)), s.rejects[i]);
  out +=
      "# HELP tessera_request_latency_us Request latency (arrival to response) in microseconds\n"
      "# TYPE tessera_request_latency_us histogram\n";
  for (const auto& s : snaps) {
    uint64_t cum = 0;
    const auto& h = s.request_latency;
    for (size_t i = 0; i < h.kBoundsUs.size(); ++i) {
      cum += h.counts[i];
      out += fmt::format("tessera_request_latency_us_bucket{{{},le=\"{}\"}} {}\n", Labels(s),
                         h.kBoundsUs[i], cum);
    }
    out +=
        fmt::format("tessera_request_latency_us_bucket{{{},le=\"+Inf\"}} {}\n", Labels(s), h.total);
    out += fmt::format("tessera_request_latency_us_sum{{{}}} {}\n", Labels(s), h.sum_us);
    out += fmt::format("tessera_request_latency_us_count{{{}}} {}\n", Labels(s), h.total);
  }
  out +=
      "# HELP tessera_batch_rows Executed batch sizes (rows, padding excluded)\n"
      "# TYPE tessera_batch_rows histogram\n";
  for (const auto& s : snaps) {
    uint64_t cum = 0, total = 0;
    double sum = 0;
    for (const auto& [rows, n] : s.batch_rows) {
      total += n;
      sum += double(rows) * double(n);
    }
    for (uint64_t le = 1; le <= 1024; le *= 2) {
      cum = 0;
      for (const auto& [rows, n] : s.batch_rows)
        if (rows <= le) cum += n;
      out += fmt::format("tessera_batch_rows_bucket{{{},le=\"{}\"}} {}\n", Labels(s), le, cum);
    }
    out += fmt::format("tessera_batch_rows_bucket{{{},le=\"+Inf\"}} {}\n", Labels(s), total);
    out += fmt::format("tessera_batch_rows_sum{{{}}} {}\n", Labels(s), sum);
    out += fmt::format("tessera_batch_rows_count{{{}}} {}\n", Labels(s), total);
  }
  // Each model's slice, as `tessera slice get` shows it.
  std::set<std::string> names;
  for (const auto& s : snaps) names.insert(s.name);
  std::string threads, sms, instances, sizes;
  for (const auto& n : names) {
    auto sl = manager.Slice(n);
    if (!sl.ok()) continue;
    if (sl->gpu >= 0)
      sms += fmt::format("tessera_model_slice_sms{{model=\"{}\",gpu=\"{}\",sharing=\"{}\"}} {}\n",
                         n, sl->gpu, sl->sharing, sl->sms);
    else if (sl->engine == "cpu")
      threads += fmt::format("tessera_model_compute_threads{{model=\"{}\"}} {}\n", n, sl->threads);
    instances +=
        fmt::format("tessera_model_instances{{model=\"{}\"}} {}\n", n, sl->instance_slices.size());
    for (const auto& i : sl->instance_slices)
      sizes += i.gpu >= 0 ? fmt::format(
                                "tessera_instance_size{{model=\"{}\",instance=\"{}\","
                                "gpu=\"{}\",unit=\"sms\"}} {}\n",
                                n, i.index, i.gpu, i.sms)
                          : fmt::format(
                                "tessera_instance_size{{model=\"{}\",instance=\"{}\","
                                "unit=\"threads\"}} {}\n",
                                n, i.index, i.threads);
  }
  out +=
      "# HELP tessera_model_compute_threads CPU models: compute threads per instance (the slice)\n"
      "# TYPE tessera_model_compute_threads gauge\n" +
      threads +
      "# HELP tessera_model_slice_sms GPU models on a sliced GPU: SMs per instance (the GPU's "
      "when unconfined)\n"
      "# TYPE tessera_model_slice_sms gauge\n" +
      sms +
      "# HELP tessera_model_instances Instances of a model's newest version (its config's and "
      "any added live)\n"
      "# TYPE tessera_model_instances gauge\n" +
      instances +
      "# HELP tessera_instance_size Each instance's slice: compute threads (CPU) or SMs (sliced "
      "GPU)\n"
      "# TYPE tessera_instance_size gauge\n" +
      sizes;
  return out;
}

}  // namespace tessera::server
