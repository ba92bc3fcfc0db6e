// The client side of `tessera bench`: a KServe v2 transport (gRPC or HTTP) that fetches
// metadata, registers shared memory and, during a run, sends each request when it is due.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/bench/loadgen.h"
#include "tessera/core/status.h"

namespace tessera::bench {

struct TensorMeta {
  std::string name, datatype;
  std::vector<int64_t> shape;  // -1: variable
};
struct ModelMeta {
  std::vector<TensorMeta> inputs, outputs;
};

// One model's request, built once and sent as often as the schedule says.
struct PreparedModel {
  std::string name, version;
  int priority = 0;
  struct Input {
    std::string name, datatype;
    std::vector<int64_t> shape;
    std::string data;         // raw little-endian bytes (sent unless shm_region is set)
    uint64_t shm_offset = 0;  // where `data` sits in the region
  };
  std::vector<Input> inputs;
  std::string shm_region;  // registered system shared memory holding the inputs, or empty
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<ModelMeta> Metadata(const std::string& model, const std::string& version) = 0;
  virtual Status RegisterShm(const std::string& region, const std::string& key, uint64_t bytes) = 0;
  virtual Status UnregisterShm(const std::string& region) = 0;
  // Builds the request of each model (index = model index in the scenario).
  virtual Status Prepare(const std::vector<PreparedModel>& models) = 0;
  // Sends every request of `sched` when due (t0_ns + due offset, MonotonicNs), then waits up to
  // drain_ns for the answers; what is still unanswered is recorded as "no_response".
  virtual void Run(Scheduler& sched, Recorder& rec, int64_t t0_ns, int64_t drain_ns) = 0;
};

// spin_ns: see SleepUntilNs. stream: every request on one ModelStreamInfer stream instead of a
// unary call each (threads is then unused).
std::unique_ptr<Transport> MakeGrpcTransport(const std::string& url, int threads, int64_t spin_ns,
                                             bool stream);
Result<std::unique_ptr<Transport>> MakeHttpTransport(const std::string& url, bool binary,
                                                     int max_connections, int64_t spin_ns);

// One blocking HTTP/1.1 request on a fresh connection to `url` (host:port, http:// optional):
// the status code and the body. Unavailable when the server cannot be reached.
Result<std::pair<int, std::string>> HttpRequest(const std::string& url, const std::string& method,
                                                const std::string& path, const std::string& body,
                                                const std::string& authorization = "");

// Waits until MonotonicNs() >= abs_ns (no-op when already past): sleeps, then spins the last
// spin_ns (timer wake-ups on virtual machines can be ~100 µs late).
void SleepUntilNs(int64_t abs_ns, int64_t spin_ns = 0);
// Makes this thread's timed sleeps precise to a few µs (Linux timer slack).
void UsePreciseTimers();

}  // namespace tessera::bench
