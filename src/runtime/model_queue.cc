#include "runtime/model_queue.h"

#include <algorithm>
#include <limits>

namespace tessera::runtime {
namespace {
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
}

QueueSettings QueueSettings::FromConfig(const ModelConfig& c, size_t server_max_queue) {
  QueueSettings s;
  s.max_batch_size = c.max_batch_size;
  s.max_queue = server_max_queue;
  if (c.dynamic_batching) {
    const auto& b = *c.dynamic_batching;
    s.dynamic_batching = c.max_batch_size > 0;
    s.preferred = b.preferred_batch_sizes;
    std::sort(s.preferred.begin(), s.preferred.end());
    s.max_queue_delay_ns = static_cast<int64_t>(b.max_queue_delay_us) * 1000;
    s.priority_levels = b.priority_levels;
    s.default_level = b.priority_levels ? b.default_priority_level : 0;
    s.default_policy = b.default_queue_policy;
    s.level_policy = b.priority_queue_policy;
  }
  if (auto slo = c.SloMs()) s.slo_ns = static_cast<int64_t>(*slo * 1e6);
  // Buckets: powers of two up to max_batch_size, max_batch_size itself and preferred sizes.
  if (c.max_batch_size > 0) {
    for (int64_t b = 1; b < c.max_batch_size; b *= 2) s.buckets.push_back(b);
    s.buckets.push_back(c.max_batch_size);
    for (int p : s.preferred) s.buckets.push_back(p);
    std::sort(s.buckets.begin(), s.buckets.end());
    s.buckets.erase(std::unique(s.buckets.begin(), s.buckets.end()), s.buckets.end());
  } else {
    s.buckets = {1};
  }
  return s;
}

int64_t QueueSettings::BucketFor(int64_t rows) const {
  auto it = std::lower_bound(buckets.begin(), buckets.end(), rows);
  return it == buckets.end() ? rows : *it;
}

const QueuePolicy& ModelQueue::PolicyOf(uint64_t level) const {
  auto it = s_.level_policy.find(level);
  return it == s_.level_policy.end() ? s_.default_policy : it->second;
}

Status ModelQueue::Push(RequestPtr& r, const std::string& shape_key, int64_t now) {
  if (entries_.size() >= s_.max_queue)
    return Status::ResourceExhausted("model '" + r->model + "' queue is full (" +
                                     std::to_string(entries_.size()) +
                                     " requests waiting); retry later");
  uint64_t level = s_.priority_levels ? s_.default_level : 0;
  if (s_.priority_levels && r->priority > 0) {
    if (r->priority > s_.priority_levels)
      return Status::InvalidArgument(
          "priority " + std::to_string(r->priority) + " is out of range; model '" + r->model +
          "' has " + std::to_string(s_.priority_levels) + " levels (1 is the highest)");
    level = r->priority;
  }
  const QueuePolicy& pol = PolicyOf(level);
  if (pol.max_queue_size > 0 && per_level_[level] >= pol.max_queue_size)
    return Status::ResourceExhausted("model '" + r->model + "' queue is full at priority level " +
                                     std::to_string(level) + " (max_queue_size " +
                                     std::to_string(pol.max_queue_size) + "); retry later");
  // Queue timeout: the policy's default; a request's own when allowed (or when the policy
  // sets none), the smaller of the two.
  uint64_t timeout_us = pol.default_timeout_us;
  if (r->timeout_us > 0 && (pol.allow_timeout_override || timeout_us == 0))
    timeout_us = timeout_us ? std::min(timeout_us, r->timeout_us) : r->timeout_us;
  r->level = level;
  r->seq = next_seq_++;
  r->timing.enqueue = now;
  r->timeout_at_ns = timeout_us ? now + static_cast<int64_t>(timeout_us) * 1000 : kNever;
  int64_t deadline = r->timeout_at_ns;
  if (s_.slo_ns > 0) deadline = std::min(deadline, r->timing.arrive + s_.slo_ns);
  r->deadline_ns = deadline;
  Key k{level, deadline, r->seq};
  if (r->timeout_at_ns != kNever) by_timeout_.emplace(r->timeout_at_ns, k);
  ++per_level_[level];
  const int64_t timeout_at = r->timeout_at_ns;
  entries_.emplace(k, Entry{std::move(r), shape_key, timeout_at});
  return Status::OK();
}

void ModelQueue::Erase(std::map<Key, Entry>::iterator it) {
  --per_level_[it->first.level];
  if (it->second.timeout_at != kNever) {
    auto [lo, hi] = by_timeout_.equal_range(it->second.timeout_at);
    for (auto t = lo; t != hi; ++t)
      if (t->second.seq == it->first.seq) {
        by_timeout_.erase(t);
        break;
      }
  }
  entries_.erase(it);
}

void ModelQueue::ExpireTimeouts(int64_t now, Decision* d) {
  while (!by_timeout_.empty() && by_timeout_.begin()->first <= now) {
    const Key k = by_timeout_.begin()->second;
    auto it = entries_.find(k);
    if (it == entries_.end()) {  // cannot happen: Erase keeps the index in step
      by_timeout_.erase(by_timeout_.begin());
      continue;
    }
    RequestPtr r = std::move(it->second.req);
    std::string shape_key = std::move(it->second.shape_key);
    Erase(it);
    if (PolicyOf(k.level).delay_on_timeout) {
      // DELAY: keep it, behind every level, in arrival order.
      r->level = std::max<uint64_t>(s_.priority_levels, 1) + 1;
      r->timeout_at_ns = kNever;
      r->deadline_ns = kNever;
      Key nk{r->level, kNever, r->seq};
      ++per_level_[nk.level];
      entries_.emplace(nk, Entry{std::move(r), std::move(shape_key), kNever});
      continue;
    }
    const int64_t waited_us = (now - r->timing.enqueue) / 1000;
    d->dropped.emplace_back(std::move(r),
                            Status::DeadlineExceeded("request timed out in the queue after " +
                                                     std::to_string(waited_us) + " us"));
    d->drop_reasons.push_back(RejectReason::kTimeout);
  }
}

ModelQueue::Decision ModelQueue::Next(int64_t now, const LatencyEstimator& est, int64_t cap) {
  Decision d;
  ExpireTimeouts(now, &d);
  // Drop, before dispatch, what cannot make its deadline even alone in a batch.
  if (s_.slo_ns > 0) {
    while (!entries_.empty()) {
      auto it = entries_.begin();
      const InferenceRequest& r = *it->second.req;
      const int64_t predicted = est.PredictNs(s_.BucketFor(r.rows));
      if (r.deadline_ns == kNever || now + predicted <= r.deadline_ns) break;
      const int64_t late_us = (now + predicted - r.deadline_ns) / 1000;
      d.dropped.emplace_back(
          std::move(it->second.req),
          Status::DeadlineExceeded("request dropped before execution: it cannot meet its "
                                   "deadline (predicted to finish " +
                                   std::to_string(late_us) + " us late)"));
      d.drop_reasons.push_back(RejectReason::kSloUnmeetable);
      Erase(it);
    }
  }
  if (entries_.empty()) {
    d.wake_at_ns = by_timeout_.empty() ? kNever : by_timeout_.begin()->first;
    return d;
  }
  auto head = entries_.begin();
  std::vector<std::map<Key, Entry>::iterator> pick{head};
  if (!s_.dynamic_batching) {
    // Without dynamic batching every request runs alone (with the batch it carries).
    d.batch.push_back(std::move(head->second.req));
    Erase(head);
    return d;
  }
  // Candidates: requests batchable with the head, in order, while the rows fit.
  int64_t rows = head->second.req->rows;
  std::vector<int64_t> prefix_rows{rows};
  std::vector<int64_t> prefix_deadline{head->first.deadline};
  int64_t oldest = head->second.req->timing.enqueue;
  const int64_t max_rows = cap > 0 ? std::min(cap, batch_limit()) : batch_limit();
  bool full = rows >= max_rows;
  for (auto it = std::next(head); it != entries_.end() && !full; ++it) {
    if (it->second.shape_key != head->second.shape_key) continue;
    const int64_t rr = it->second.req->rows;
    if (rows + rr > max_rows) {
      full = true;
      break;
    }
    rows += rr;
    pick.push_back(it);
    prefix_rows.push_back(rows);
    prefix_deadline.push_back(std::min(prefix_deadline.back(), it->first.deadline));
    oldest = std::min(oldest, it->second.req->timing.enqueue);
    if (rows == max_rows) full = true;
  }
  size_t take = pick.size();
  // With an SLO: the largest prefix whose predicted finish meets its earliest deadline.
  if (s_.slo_ns > 0) {
    while (take > 1 && prefix_deadline[take - 1] != kNever &&
           now + est.PredictNs(s_.BucketFor(prefix_rows[take - 1])) > prefix_deadline[take - 1])
      --take;
    if (take < pick.size()) full = true;  // more rows would miss the deadline: go now
  }
  bool go = full;
  // A preferred size formed exactly: send the largest such prefix now.
  for (size_t k = take; k-- > 0 && !go;)
    if (std::binary_search(s_.preferred.begin(), s_.preferred.end(),
                           static_cast<int>(prefix_rows[k]))) {
      take = k + 1;
      go = true;
    }
  if (!go) {
    // Wait for more until the oldest has waited max_queue_delay, and (with an SLO) no later
    // than the last moment the batch formed so far can start and still make its deadline.
    int64_t dispatch_at = oldest + s_.max_queue_delay_ns;
    if (s_.slo_ns > 0 && prefix_deadline[take - 1] != kNever)
      dispatch_at = std::min(dispatch_at, prefix_deadline[take - 1] -
                                              est.PredictNs(s_.BucketFor(prefix_rows[take - 1])));
    if (now < dispatch_at) {
      d.wake_at_ns =
          by_timeout_.empty() ? dispatch_at : std::min(dispatch_at, by_timeout_.begin()->first);
      return d;
    }
  }
  for (size_t k = 0; k < take; ++k) {
    d.batch.push_back(std::move(pick[k]->second.req));
    Erase(pick[k]);
  }
  return d;
}

std::vector<RequestPtr> ModelQueue::TakeAll() {
  std::vector<RequestPtr> out;
  for (auto& [_, e] : entries_) out.push_back(std::move(e.req));
  entries_.clear();
  by_timeout_.clear();
  per_level_.clear();
  return out;
}

}  // namespace tessera::runtime
