// The CUDA SliceProviders behind `--sharing` (runtime/slices.h holds the bookkeeping they serve):
//   green      CUDA green contexts: the GPU's SMs split once into groups of `group_sms`; a place
//              is a green context over a set of those groups, with a stream bound to it, so work
//              launched there runs on those SMs only;
//   mps        a CUDA context per place with an SM-count execution affinity (needs an MPS
//              daemon that partitions per context; limits how many SMs, not which), checked at
//              start by a probe of what the engine does on it;
//   streams    one plain stream per place on the whole GPU: the uncontrolled, Triton-like
//              baseline (groups are accounted but not enforced);
//   exclusive  every place shares one stream: one model's batch at a time, the time-sharing
//              baseline.
// Built only with nvcc; the driver API (green contexts) is reached through the CUDA runtime's
// entry-point query, so nothing links libcuda and tessera still starts where no driver exists.
#pragma once

#include <memory>
#include <string>

#include "tessera/runtime/slices.h"

namespace tessera::gpu {

class GpuSliceProvider : public runtime::SliceProvider {
 public:
  // The GPU as the slices see it (its SM count, group size, memory).
  virtual const runtime::GpuLayout& layout() const = 0;
  // The cudaStream_t a place's work is launched on.
  virtual void* Stream(uint64_t place) const = 0;
};

// Unavailable when the device or the mechanism cannot be used (no GPU, a driver without green
// contexts); InvalidArgument for an unknown kind (the kinds are listed).
Result<std::unique_ptr<GpuSliceProvider>> CreateSliceProvider(const std::string& kind, int device,
                                                              int group_sms = 8);

}  // namespace tessera::gpu
