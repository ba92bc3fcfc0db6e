// One model version's request queue and its batching decision, as pure logic over a given
// time (no threads, no clock): the executor threads call it under their lock, the simulator
// on virtual time, the tests directly.
//
// Order: priority level (1 first), then deadline (earliest first), then arrival. A request's
// deadline is arrival + min(its timeout, the model's SLO); without either it has none and
// the order is arrival order within its level.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "runtime/latency_estimator.h"
#include "tessera/model/config.h"
#include "tessera/runtime/request.h"
#include "tessera/runtime/stats.h"

namespace tessera::runtime {

struct QueueSettings {
  int max_batch_size = 0;  // 0: the model does not batch
  bool dynamic_batching = false;
  std::vector<int> preferred;  // ascending
  int64_t max_queue_delay_ns = 0;
  uint64_t priority_levels = 0;  // 0: one level
  uint64_t default_level = 0;
  QueuePolicy default_policy;
  std::map<uint64_t, QueuePolicy> level_policy;
  int64_t slo_ns = 0;       // 0: no SLO (Triton's semantics)
  size_t max_queue = 4096;  // the server's bound on queued requests, whatever the config
  // Batch sizes executables exist for (ascending); a batch runs on the smallest >= its rows.
  std::vector<int64_t> buckets;

  static QueueSettings FromConfig(const ModelConfig& c, size_t server_max_queue);
  int64_t BucketFor(int64_t rows) const;
};

class ModelQueue {
 public:
  explicit ModelQueue(QueueSettings s) : s_(std::move(s)) {}

  // Admits `r` at time `now`: sets its level, deadline and timeout. ResourceExhausted (and `r`
  // untouched) when its level's queue or the whole queue is full. `shape_key` groups requests
  // that can share a batch (same non-batch shapes and types).
  Status Push(RequestPtr& r, const std::string& shape_key, int64_t now);

  struct Decision {
    std::vector<RequestPtr> batch;  // run these together now (EDF order)
    // Dropped before dispatch, with why (timeout expired, deadline cannot be met).
    std::vector<std::pair<RequestPtr, Status>> dropped;
    std::vector<RejectReason> drop_reasons;  // parallel to dropped
    int64_t wake_at_ns = 0;  // batch empty: decide again at this time (INT64_MAX: on a push)
  };
  // What to do at `now`, predicting batch latencies with `est`; `cap` > 0 caps this batch's
  // rows below the batch limit (an instance's own limit).
  Decision Next(int64_t now, const LatencyEstimator& est, int64_t cap = 0);

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Removes everything (shutdown); the caller answers them.
  std::vector<RequestPtr> TakeAll();
  const QueueSettings& settings() const { return s_; }
  // Caps the rows a batch gathers below the config's max_batch_size from the next decision on
  // (the online tuner's batch limit; a request carrying more rows still runs alone); 0 lifts
  // the cap. Executables stay as they are.
  void SetBatchLimit(int64_t rows) { limit_ = rows; }
  // The rows a batch gathers at most now.
  int64_t batch_limit() const {
    return limit_ > 0 && limit_ < s_.max_batch_size ? limit_ : s_.max_batch_size;
  }

 private:
  struct Key {
    uint64_t level;
    int64_t deadline;
    uint64_t seq;
    bool operator<(const Key& o) const {
      if (level != o.level) return level < o.level;
      if (deadline != o.deadline) return deadline < o.deadline;
      return seq < o.seq;
    }
  };
  struct Entry {
    RequestPtr req;
    std::string shape_key;
    int64_t timeout_at;  // INT64_MAX: none (then not in by_timeout_)
  };
  const QueuePolicy& PolicyOf(uint64_t level) const;
  void Erase(std::map<Key, Entry>::iterator it);
  void ExpireTimeouts(int64_t now, Decision* d);

  QueueSettings s_;
  int64_t limit_ = 0;
  std::map<Key, Entry> entries_;
  std::multimap<int64_t, Key> by_timeout_;  // requests with a queue timeout
  std::map<uint64_t, size_t> per_level_;
  uint64_t next_seq_ = 0;
};

}  // namespace tessera::runtime
