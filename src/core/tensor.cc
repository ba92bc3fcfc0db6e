#include "tessera/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace tessera {

size_t DataTypeSize(DataType t) {
  switch (t) {
    case DataType::kBool:
    case DataType::kUInt8:
    case DataType::kInt8:
      return 1;
    case DataType::kUInt16:
    case DataType::kInt16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      return 2;
    case DataType::kUInt32:
    case DataType::kInt32:
    case DataType::kFloat32:
      return 4;
    case DataType::kUInt64:
    case DataType::kInt64:
    case DataType::kFloat64:
      return 8;
    case DataType::kInvalid:
      return 0;
  }
  return 0;
}

namespace {
struct NameEntry {
  DataType type;
  const char* name;
};
constexpr NameEntry kNames[] = {
    {DataType::kBool, "BOOL"},     {DataType::kUInt8, "UINT8"},   {DataType::kUInt16, "UINT16"},
    {DataType::kUInt32, "UINT32"}, {DataType::kUInt64, "UINT64"}, {DataType::kInt8, "INT8"},
    {DataType::kInt16, "INT16"},   {DataType::kInt32, "INT32"},   {DataType::kInt64, "INT64"},
    {DataType::kFloat16, "FP16"},  {DataType::kBFloat16, "BF16"}, {DataType::kFloat32, "FP32"},
    {DataType::kFloat64, "FP64"},
};
}  // namespace

const char* DataTypeName(DataType t) {
  for (const auto& e : kNames)
    if (e.type == t) return e.name;
  return "INVALID";
}

Result<DataType> DataTypeFromName(const std::string& name) {
  std::string n = name.rfind("TYPE_", 0) == 0 ? name.substr(5) : name;
  for (const auto& e : kNames)
    if (n == e.name) return e.type;
  return Status::InvalidArgument("unknown datatype '" + name +
                                 "', expected one of BOOL, UINT8..UINT64, INT8..INT64, FP16, "
                                 "BF16, FP32, FP64");
}

int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string ShapeToString(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

Tensor Tensor::Allocate(DataType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  size_t bytes = t.nbytes();
  size_t alloc = (bytes + 63) / 64 * 64;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(64, alloc);
  std::memset(p, 0, alloc);
  t.owner_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::Adopt(DataType dtype, Shape shape, std::unique_ptr<std::string> bytes) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  std::string* s = bytes.release();
  t.owner_ =
      std::shared_ptr<uint8_t>(reinterpret_cast<uint8_t*>(s->data()), [s](uint8_t*) { delete s; });
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::View(DataType dtype, Shape shape, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = static_cast<uint8_t*>(data);
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Allocate(dtype_, shape_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

Tensor Tensor::View(DataType dtype, Shape shape, void* data, std::shared_ptr<const void> holder) {
  Tensor t = View(dtype, std::move(shape), data);
  // Aliasing constructor: shares holder's ownership, points at the data.
  t.owner_ = std::shared_ptr<uint8_t>(std::const_pointer_cast<void>(holder), t.data_);
  return t;
}

Tensor Tensor::SliceRows(int64_t begin, int64_t end) const {
  Tensor t = *this;
  const int64_t row = shape_.empty() || shape_[0] == 0 ? 0 : numel() / shape_[0];
  t.shape_[0] = end - begin;
  t.data_ = data_ + static_cast<size_t>(begin * row) * DataTypeSize(dtype_);
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

double Tensor::GetAsDouble(int64_t i) const {
  switch (dtype_) {
    case DataType::kBool:
    case DataType::kUInt8:
      return data<uint8_t>()[i];
    case DataType::kInt8:
      return data<int8_t>()[i];
    case DataType::kUInt16:
      return data<uint16_t>()[i];
    case DataType::kInt16:
      return data<int16_t>()[i];
    case DataType::kUInt32:
      return data<uint32_t>()[i];
    case DataType::kInt32:
      return data<int32_t>()[i];
    case DataType::kUInt64:
      return static_cast<double>(data<uint64_t>()[i]);
    case DataType::kInt64:
      return static_cast<double>(data<int64_t>()[i]);
    case DataType::kFloat32:
      return data<float>()[i];
    case DataType::kFloat64:
      return data<double>()[i];
    default:
      return 0.0;
  }
}

int64_t Tensor::GetAsInt64(int64_t i) const {
  switch (dtype_) {
    case DataType::kInt64:
      return data<int64_t>()[i];
    case DataType::kUInt64:
      return static_cast<int64_t>(data<uint64_t>()[i]);
    case DataType::kFloat32:
    case DataType::kFloat64:
      return static_cast<int64_t>(GetAsDouble(i));
    default:
      return static_cast<int64_t>(GetAsDouble(i));
  }
}

}  // namespace tessera
