// A SliceProvider for tests without a GPU: records every place it makes and destroys (a place
// destroyed twice, or never made, fails the test) and fails the next Create on request.
// Thread-safe: the serving tests create and destroy places from several threads.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <vector>

#include "tessera/runtime/slices.h"

namespace tessera::testing {

class FakeSliceProvider final : public runtime::SliceProvider {
 public:
  std::string kind() const override { return "fake"; }
  Result<uint64_t> Create(const std::vector<int>& groups) override {
    std::lock_guard<std::mutex> lock(mu);
    if (fail_next) {
      fail_next = false;
      return Status::Internal("green context creation failed (injected)");
    }
    live[next] = groups;
    return next++;
  }
  void Destroy(uint64_t place) override {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(live.erase(place), 1u) << "place " << place << " destroyed twice or never made";
  }
  bool Live(uint64_t place) {
    std::lock_guard<std::mutex> lock(mu);
    return live.count(place) > 0;
  }
  std::map<uint64_t, std::vector<int>> Places() {
    std::lock_guard<std::mutex> lock(mu);
    return live;
  }

  std::mutex mu;
  std::map<uint64_t, std::vector<int>> live;  // place -> its SM groups
  uint64_t next = 1;
  bool fail_next = false;
};

}  // namespace tessera::testing
