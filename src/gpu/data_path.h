// The CUDA GpuDevice (runtime/gpu.h): one GPU's slice provider plus its data path.
//   - pinned host memory from cudaHostAlloc (portable), so every copy is a DMA transfer;
//   - per place a copy-in and a copy-out stream beside its compute stream: a batch's inputs go
//     host -> device on copy-in, the model waits for them by event on the place's stream, the
//     outputs and the error word go device -> host on copy-out after the model's event. Copy
//     streams are per place, not per GPU, so that one model's copy waiting on its long kernel
//     never holds another model's copy behind it; the copy engines themselves are shared.
//   - completion: kEvent puts a host function after the copy-out (cudaLaunchHostFunc) that hands
//     the batch to this GPU's notifier thread, which checks the batch's event and completes it;
//     kSync synchronizes the copy-out stream; kSpin polls the batch's event.
// Built only with nvcc.
#pragma once

#include <memory>
#include <string>

#include "tessera/runtime/gpu.h"

namespace tessera::gpu {

// `sharing`: green, streams or exclusive (see slice_providers.h). Unavailable when the GPU or the
// mechanism cannot be used.
Result<std::shared_ptr<runtime::GpuDevice>> CreateGpuDevice(const std::string& sharing, int device,
                                                            int group_sms = 8);

}  // namespace tessera::gpu
