// DataType, Shape and Tensor: the value types every part of Tessera passes around.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

// Element types; names follow the KServe v2 datatype strings (FP32, INT64, BOOL, ...).
enum class DataType {
  kInvalid = 0,
  kBool,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
};

size_t DataTypeSize(DataType t);
const char* DataTypeName(DataType t);                        // "FP32"
Result<DataType> DataTypeFromName(const std::string& name);  // accepts "FP32" / "TYPE_FP32"

using Shape = std::vector<int64_t>;
int64_t NumElements(const Shape& s);
std::string ShapeToString(const Shape& s);  // "[1,3,224,224]"

// A dense, row-major tensor. It either owns its storage (Allocate / Copy) or views memory that
// someone else owns (View); copies of a Tensor share storage. Not thread-safe for concurrent
// writes; concurrent reads are fine.
class Tensor {
 public:
  Tensor() = default;
  // Zero-filled owned storage, 64-byte aligned.
  static Tensor Allocate(DataType dtype, Shape shape);
  // Takes ownership of `bytes` (exactly nbytes long) without copying: used to adopt large
  // weights straight from a parsed model.
  static Tensor Adopt(DataType dtype, Shape shape, std::unique_ptr<std::string> bytes);
  // Non-owning view: `data` must outlive every use of the returned tensor.
  static Tensor View(DataType dtype, Shape shape, void* data);
  // View of memory kept alive by `holder` (e.g. a request body or a shared-memory mapping);
  // the tensor and its copies hold a reference to it.
  static Tensor View(DataType dtype, Shape shape, void* data, std::shared_ptr<const void> holder);
  // Deep copy into new owned storage.
  Tensor Clone() const;
  // Same storage, other shape with the same number of elements.
  Tensor Reshaped(Shape shape) const;
  // Rows [begin, end) along dim 0, sharing storage (rank >= 1, 0 <= begin <= end <= dim(0)).
  Tensor SliceRows(int64_t begin, int64_t end) const;

  bool defined() const { return dtype_ != DataType::kInvalid; }
  DataType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DataTypeSize(dtype_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T>
  T* data() {
    return reinterpret_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(data_);
  }

  // Element i converted to double / int64 (for shape arithmetic and printing).
  double GetAsDouble(int64_t i) const;
  int64_t GetAsInt64(int64_t i) const;

 private:
  DataType dtype_ = DataType::kInvalid;
  Shape shape_;
  std::shared_ptr<uint8_t> owner_;
  uint8_t* data_ = nullptr;
};

}  // namespace tessera
