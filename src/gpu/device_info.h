// GPU discovery (CUDA runtime). Built only when nvcc is present; callers guard with
// TESSERA_HAVE_CUDA.
#pragma once

#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera::gpu {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int sm_count = 0;
  size_t total_memory_bytes = 0;
  int async_engines = 0;  // copy engines usable concurrently with compute
  size_t l2_bytes = 0;
};

// Every visible GPU. Unavailable (with the driver's words) when CUDA cannot initialize, e.g. no
// driver or no device: the caller decides whether that is an error.
Result<std::vector<DeviceInfo>> ListDevices();

// Runs a tiny kernel on device `index` that writes i*scale into n floats and copies them back;
// proves the toolchain, the driver and the device work end to end.
Status SelfTest(int index, int n = 1 << 16);

}  // namespace tessera::gpu
