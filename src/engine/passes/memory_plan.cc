#include <algorithm>

#include "engine/passes/passes.h"

namespace tessera::passes {

MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests, size_t alignment) {
  // Greedy by size (largest first), each placed at the lowest offset that does not overlap any
  // already-placed buffer alive at the same time. Simple, and within a few % of optimal on CNNs.
  struct Placed {
    size_t offset, bytes;
    int first, last;
  };
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests[a].bytes > requests[b].bytes; });
  MemoryPlan plan;
  std::vector<Placed> placed;
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    const size_t bytes =
        std::max<size_t>(alignment, (r.bytes + alignment - 1) / alignment * alignment);
    plan.naive_bytes += bytes;
    std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of overlapping-lifetime buffers
    for (const auto& p : placed)
      if (p.first <= r.last && r.first <= p.last) busy.emplace_back(p.offset, p.offset + p.bytes);
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [b, e] : busy) {
      if (off + bytes <= b) break;
      off = std::max(off, e);
    }
    placed.push_back({off, bytes, r.first, r.last});
    plan.offsets[r.name] = off;
    plan.arena_bytes = std::max(plan.arena_bytes, off + bytes);
  }
  return plan;
}

}  // namespace tessera::passes
