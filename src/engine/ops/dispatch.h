// Type dispatch and broadcasting iteration shared by the kernels.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera::ops {

struct Bool8 {  // storage type of BOOL: one byte, 0 or 1
  uint8_t v;
};

// Calls f(T{}) with T the C++ type of `t`; returns false when `t` is not a numeric type.
template <typename F>
bool VisitNumeric(DataType t, F&& f) {
  switch (t) {
    case DataType::kFloat32:
      f(float{});
      return true;
    case DataType::kFloat64:
      f(double{});
      return true;
    case DataType::kInt64:
      f(int64_t{});
      return true;
    case DataType::kInt32:
      f(int32_t{});
      return true;
    case DataType::kInt16:
      f(int16_t{});
      return true;
    case DataType::kInt8:
      f(int8_t{});
      return true;
    case DataType::kUInt8:
      f(uint8_t{});
      return true;
    case DataType::kUInt16:
      f(uint16_t{});
      return true;
    case DataType::kUInt32:
      f(uint32_t{});
      return true;
    case DataType::kUInt64:
      f(uint64_t{});
      return true;
    case DataType::kBool:
      f(Bool8{});
      return true;
    default:
      return false;
  }
}

template <typename T>
inline double ToDouble(T v) {
  if constexpr (std::is_same_v<T, Bool8>)
    return v.v ? 1.0 : 0.0;
  else
    return static_cast<double>(v);
}

// Broadcast iteration: the output is walked row by row (the last dimension is the row); for each
// input, `stride[k]` per output dimension is 0 where that input is broadcast.
struct BroadcastIter {
  Shape out;
  int64_t inner = 1;  // row length
  int64_t rows = 1;
  std::vector<std::vector<int64_t>> strides;  // [input][dim]

  BroadcastIter(const Shape& out_shape, const std::vector<Shape>& in_shapes);
  // Element offset of row `row` in input k.
  int64_t RowOffset(size_t k, int64_t row) const;
  // Stride of input k along the row: 0 (broadcast) or 1.
  int64_t InnerStride(size_t k) const { return out.empty() ? 0 : strides[k].back(); }
};

}  // namespace tessera::ops
