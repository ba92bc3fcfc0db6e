// Injectable time source: production code uses SystemClock; tests and the simulator use
// ManualClock so schedulers run on virtual time.
#pragma once

#include <atomic>
#include <cstdint>

namespace tessera {

// Thread-safe. Time is in nanoseconds since an arbitrary epoch, monotonic.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNs() const = 0;
  // Blocks (real clock) or advances (manual clock) by `ns`.
  virtual void SleepNs(int64_t ns) = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowNs() const override;
  void SleepNs(int64_t ns) override;
  static SystemClock* Default();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 0) : now_(start_ns) {}
  int64_t NowNs() const override { return now_.load(); }
  void SleepNs(int64_t ns) override { now_.fetch_add(ns); }
  void AdvanceNs(int64_t ns) { now_.fetch_add(ns); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace tessera
