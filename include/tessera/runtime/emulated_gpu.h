// A GPU emulated on the host, for `tessera serve --engine cuda-host`: the whole GPU serving path
// (slices per instance, pinned-style buffers, the data path's copies, event completion through a
// notifier, live make-before-break resize) runs on a machine without a GPU, with the CUDA
// backend's lowered programs interpreted on the host as the "kernels". Slices are accounted on a
// made-up layout (default: 132 SMs in groups of 8, like an H100) and confine nothing; batches run
// one at a time on one worker thread, as on a GPU's single queue. It checks plumbing, never speed.
#pragma once

#include <memory>

#include "tessera/runtime/gpu.h"

namespace tessera::runtime {

GpuLayout EmulatedGpuLayout(int index = 0);
std::shared_ptr<GpuDevice> CreateEmulatedGpu(GpuLayout layout);

}  // namespace tessera::runtime
