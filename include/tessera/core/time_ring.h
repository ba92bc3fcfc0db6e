// A FIFO of times (ns) on a power-of-two ring that grows by doubling: fewer branches and no
// block allocations per push and pop than std::deque. The fleet simulator and the planner's
// queue checks push and pop one per simulated request.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tessera {

class TimeRing {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  int64_t front() const { return buf_[head_]; }
  void pop_front() {
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  void push_back(int64_t t) {
    if (size_ == buf_.size()) Grow();
    buf_[(head_ + size_) & mask_] = t;
    ++size_;
  }

 private:
  void Grow() {
    std::vector<int64_t> bigger(std::max<size_t>(16, 2 * buf_.size()));
    for (size_t i = 0; i < size_; ++i) bigger[i] = buf_[(head_ + i) & mask_];
    buf_ = std::move(bigger);
    head_ = 0;
    mask_ = buf_.size() - 1;
  }
  std::vector<int64_t> buf_;
  size_t head_ = 0, size_ = 0, mask_ = 0;
};

}  // namespace tessera
