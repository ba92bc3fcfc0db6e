// An inference request as the runtime sees it, whatever protocol it came in on, and its
// response. Frontends build requests; the runtime validates, queues, batches, runs them and
// calls `done` exactly once.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/status.h"
#include "tessera/core/tensor.h"

namespace tessera {

// Timestamps (ns, SystemClock) along a request's path; 0 = not reached.
struct RequestTiming {
  int64_t arrive = 0;       // frontend has the whole request (before parsing)
  int64_t enqueue = 0;      // validated and in the model's queue
  int64_t dispatch = 0;     // taken into a batch
  int64_t input_done = 0;   // the batch's inputs are gathered
  int64_t infer_done = 0;   // the executable has run
  int64_t output_done = 0;  // this request's outputs are cut from the batch's
};

struct InferenceResponse {
  Status status;  // not OK: outputs are empty
  std::string model;
  int64_t version = 0;
  std::string id;
  std::vector<std::string> output_names;
  std::vector<Tensor> outputs;  // same order as output_names; may share storage with the batch
  RequestTiming timing;
  int64_t batch_rows = 0;   // rows of the executed batch (padding excluded)
  int compute_threads = 0;  // CPU compute threads the batch ran with (its slice)
  int gpu_sms = 0;          // SMs of the GPU slice the batch ran on (0: the CPU)
};

using ResponseCallback = std::function<void(InferenceResponse&&)>;

struct InferenceRequest {
  std::string model;
  int64_t version = 0;  // 0: the newest ready version
  std::string id;
  std::vector<std::string> input_names;
  std::vector<Tensor> inputs;        // views keep their bytes alive (request body, shm region)
  std::vector<std::string> outputs;  // requested outputs; empty: every output
  uint64_t priority = 0;             // 0: the model's default level; 1 is the highest
  uint64_t timeout_us = 0;           // 0: none (the model's queue policy may set one)
  RequestTiming timing;
  // Called exactly once, from a runtime thread (or the caller's, for a rejection before
  // queueing), with the response. Must not block for long: it runs on an executor thread.
  ResponseCallback done;

  // Set by the runtime when the request is admitted.
  int64_t rows = 1;                                           // batch rows this request carries
  int64_t deadline_ns = std::numeric_limits<int64_t>::max();  // EDF key
  int64_t timeout_at_ns = std::numeric_limits<int64_t>::max();
  uint64_t level = 0;  // effective priority level
  uint64_t seq = 0;    // arrival order, the tie-breaker
};

using RequestPtr = std::unique_ptr<InferenceRequest>;

}  // namespace tessera
