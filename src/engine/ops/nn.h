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

// Resize (nearest / linear) as per-axis tables: for output coordinate o on axis a, the source
// indices i0[a][o] and i1[a][o] and the weight w1[a][o] of i1 (0 for nearest). `lin` lists the
// axes where some weight is non-zero: an output element sums 2^|lin| corners.
struct ResizeTables {
  struct Plan {
    Shape out;
    std::vector<float> scales;
  } plan;
  std::vector<std::vector<int64_t>> i0, i1;
  std::vector<std::vector<float>> w1;
  std::vector<size_t> lin;
};
Result<ResizeTables> ComputeResize(const Node& n, const std::vector<const ValueMeta*>& in);

}  // namespace tessera::ops
