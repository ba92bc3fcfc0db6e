// The open-loop load generator behind `tessera bench`: a Scheduler merges every model's arrival
// process into one timeline; a transport (gRPC or HTTP, src/bench/) sends each request at its due
// time whatever is still in flight; a Recorder files each answer against the time the request
// was *due* (so a stalled server shows as latency, not as fewer requests: no coordinated
// omission). Requests due during the warm-up are sent but not counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <vector>

#include "tessera/bench/arrivals.h"
#include "tessera/bench/histogram.h"
#include "tessera/bench/scenario.h"
#include "tessera/core/status.h"

namespace tessera::bench {

// CLOCK_MONOTONIC in ns (what the transports sleep on).
int64_t MonotonicNs();

// Due times of every model's requests in [0, end_ns), in order.
class Scheduler {
 public:
  Scheduler(const Scenario& s, double rate_scale, int64_t end_ns);
  // The next request's due offset (ns from the start), or -1 when there are no more.
  int64_t PeekNs() const { return heap_.empty() ? -1 : heap_.top().due_ns; }
  // Takes the next request: {model index, due offset}. Only when PeekNs() >= 0.
  std::pair<int, int64_t> Pop();

 private:
  struct Item {
    int64_t due_ns;
    int model;
    bool operator>(const Item& o) const {
      return due_ns != o.due_ns ? due_ns > o.due_ns : model > o.model;
    }
  };
  void Push(int model);
  std::vector<std::unique_ptr<ArrivalProcess>> procs_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap_;
  int64_t end_ns_;
};

// How one request ended. kind is empty when it succeeded, else e.g. "http_429",
// "grpc_UNAVAILABLE", "connect_failed", "connection_closed", "no_response".
struct Outcome {
  bool ok = true;
  std::string kind;
  std::string message;  // the server's error text, if any
};
// Whether an error kind is the server declining the work (overload or a deadline it could not
// meet: HTTP 429/503/504, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE/DEADLINE_EXCEEDED) rather than a
// failure.
bool IsRejection(const std::string& kind);

struct ModelResult {
  std::string name;
  double slo_ms = 0;
  double offered_rps = 0;  // mean rate asked for (after the sweep's scale)
  int64_t sent = 0;        // due in the measured window
  int64_t ok = 0, within_slo = 0, rejected = 0, errors = 0, unanswered = 0;
  std::map<std::string, int64_t> errors_by_kind;  // rejections included, by kind
  std::string first_error;                        // one example message
  Histogram latency_ns;                           // successful requests, due -> answer
  // How late the generator sent (due -> handed to the socket / gRPC): when this grows, the
  // generator (or its machine) is the bottleneck, not the server.
  Histogram send_lag_ns;
  // Per second of the run (warm-up included; t = index seconds from the start), by due time.
  struct Second {
    int64_t sent = 0, ok = 0, within_slo = 0;
  };
  std::vector<Second> timeline;
  double duration_s = 0;  // the measured window
  double warmup_s = 0;

  double goodput_rps() const { return duration_s > 0 ? within_slo / duration_s : 0; }
  double throughput_rps() const { return duration_s > 0 ? ok / duration_s : 0; }
  double attainment() const { return sent ? static_cast<double>(within_slo) / sent : 1.0; }
};

class Recorder {
 public:
  Recorder(const Scenario& s, double rate_scale);
  // A request due at `due_ns` (offset from the start) was sent at `sent_ns`.
  void Sent(int model, int64_t due_ns, int64_t sent_ns);
  // It ended at `done_ns` (same offsets).
  void Done(int model, int64_t due_ns, int64_t done_ns, const Outcome& outcome);

  // Totals over the whole run so far, for the progress line (any thread).
  int64_t sent_total() const { return sent_.load(); }
  int64_t done_total() const { return done_.load(); }
  int64_t measured_done() const { return measured_done_.load(); }
  int64_t measured_within_slo() const { return measured_good_.load(); }

  // Per model, and all models together (its SLO counts per model).
  std::vector<ModelResult> Results() const;
  ModelResult Total() const;

 private:
  struct PerModel {
    mutable std::mutex mu;
    ModelResult r;
    int64_t slo_ns = 0;
  };
  bool Measured(int64_t due_ns) const { return due_ns >= warmup_ns_ && due_ns < end_ns_; }
  int64_t warmup_ns_, end_ns_;
  std::vector<std::unique_ptr<PerModel>> models_;
  std::atomic<int64_t> sent_{0}, done_{0}, measured_done_{0}, measured_good_{0};
};

struct RunOptions {
  double rate_scale = 1.0;
  bool progress = true;  // a line on stderr each second
  std::string progress_prefix;
  int grpc_threads = 1;      // completion-queue threads
  bool grpc_stream = false;  // all requests on one ModelStreamInfer stream
  // The sender sleeps until this long before a request is due and spins the rest, so requests
  // leave on time even where timer wake-ups are slow (VMs); 0: sleep only.
  int64_t spin_ns = 0;
};

struct RunResult {
  double rate_scale = 1.0;
  double offered_rps = 0;
  double wall_s = 0;
  std::vector<ModelResult> models;
  ModelResult total;
  // Every model met the target attainment.
  bool Held(double target) const;
};

// Connects, reads each model's metadata, prepares the requests (and shared memory), runs the
// scenario once and reports. Fails (before sending) when the server or a model is not there or
// an input's shape cannot be worked out.
Result<RunResult> RunScenario(const Scenario& scenario, const RunOptions& options);

// Result file pieces (JSON text).
std::string ModelResultJson(const ModelResult& m, bool with_series);
std::string RunResultJson(const RunResult& r, bool with_series);

}  // namespace tessera::bench
