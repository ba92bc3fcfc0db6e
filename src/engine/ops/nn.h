// Geometry of convolution and pooling windows, shared by inference and backends.
#pragma once

#include <vector>

#include "engine/ops/ops.h"

namespace tessera::ops {

struct WindowGeometry {
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end;  // per spatial dim
  Shape out;                                                            // full output shape
};

// For Conv (w = weight shape) or pools (w empty: kernel_shape attribute). Resolves auto_pad and
// ceil_mode into explicit begin/end pads (end pads may grow so that ceil-mode windows fit).
Result<WindowGeometry> ComputeWindow(const Node& n, const Shape& x, const Shape& w);

}  // namespace tessera::ops
