// Geometry of convolution and pooling windows, and Slice / Split parameters, shared by
// inference and backends.
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

// Slice's per-dim start and step and its output shape (starts / ends / axes / steps from inputs
// or, before opset 10, attributes; clamped as ONNX specifies).
struct SliceSpec {
  Shape out;
  std::vector<int64_t> start, step;
};
Result<SliceSpec> ComputeSlice(const Node& n, const std::vector<const ValueMeta*>& in);
// Split's sizes along its axis (attribute, input, or equal parts).
Result<std::vector<int64_t>> SplitSizes(const Node& n, const std::vector<const ValueMeta*>& in,
                                        size_t outputs);

}  // namespace tessera::ops
