#include "server/tensor_io.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace tessera::server {

Result<DataType> ParseDatatype(const std::string& name, const std::string& tensor) {
  if (name == "BYTES")
    return Status::Unimplemented("tensor '" + tensor +
                                 "': BYTES (string) tensors are not supported; Tessera's models "
                                 "take numeric tensors");
  auto t = DataTypeFromName(name);
  if (!t.ok() || *t == DataType::kInvalid || name.rfind("TYPE_", 0) == 0)
    return Status::InvalidArgument("tensor '" + tensor + "' has datatype '" + name +
                                   "'; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, "
                                   "INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64");
  return *t;
}

Result<int64_t> CheckShape(const std::vector<int64_t>& shape, const std::string& tensor) {
  int64_t n = 1;
  if (shape.size() > 16)
    return Status::InvalidArgument("tensor '" + tensor + "' has " + std::to_string(shape.size()) +
                                   " dims; at most 16 are supported");
  for (int64_t d : shape) {
    if (d < 0)
      return Status::InvalidArgument("tensor '" + tensor + "' has a negative dim in shape " +
                                     ShapeToString(shape));
    if (d > 0 && n > std::numeric_limits<int64_t>::max() / 16 / d)
      return Status::InvalidArgument("tensor '" + tensor + "' shape " + ShapeToString(shape) +
                                     " is too large");
    n *= d;
  }
  return n;
}

Result<Tensor> InputFromBytes(const std::string& name, DataType dtype, const Shape& shape,
                              const void* data, size_t bytes, std::shared_ptr<const void> holder) {
  TESSERA_ASSIGN_OR_RETURN(int64_t n, CheckShape(shape, name));
  const size_t want = static_cast<size_t>(n) * DataTypeSize(dtype);
  if (bytes != want)
    return Status::InvalidArgument("input '" + name + "': " + DataTypeName(dtype) + " " +
                                   ShapeToString(shape) + " needs " + std::to_string(want) +
                                   " bytes, got " + std::to_string(bytes));
  return Tensor::View(dtype, shape, const_cast<void*>(data), std::move(holder));
}

Status ResolveShm(ServerContext& ctx, ShmRef* ref) {
  if (ctx.system_shm().Status(ref->region).ok()) {
    ref->cuda = false;
    return Status::OK();
  }
  if (ctx.cuda_shm().Status(ref->region).ok()) {
    ref->cuda = true;
    return Status::OK();
  }
  return Status::NotFound("no shared memory region '" + ref->region +
                          "' is registered (register it first)");
}

Result<Tensor> InputFromShm(ServerContext& ctx, const std::string& name, DataType dtype,
                            const Shape& shape, ShmRef ref) {
  TESSERA_RETURN_IF_ERROR(ResolveShm(ctx, &ref));
  TESSERA_ASSIGN_OR_RETURN(int64_t n, CheckShape(shape, name));
  const size_t want = static_cast<size_t>(n) * DataTypeSize(dtype);
  if (ref.byte_size != want)
    return Status::InvalidArgument("input '" + name + "': " + DataTypeName(dtype) + " " +
                                   ShapeToString(shape) + " needs " + std::to_string(want) +
                                   " bytes, but shared_memory_byte_size is " +
                                   std::to_string(ref.byte_size));
  ShmRegistry& reg = ref.cuda ? static_cast<ShmRegistry&>(ctx.cuda_shm())
                              : static_cast<ShmRegistry&>(ctx.system_shm());
  auto slice = reg.Slice(ref.region, ref.offset, ref.byte_size);
  if (!slice.ok()) return slice.status().WithContext("input '" + name + "'");
  if (!ref.cuda) return Tensor::View(dtype, shape, slice->data, slice->holder);
  Tensor t = Tensor::Allocate(dtype, shape);
  TESSERA_RETURN_IF_ERROR(CudaShmRegistry::CopyToHost(*slice, t.raw(), want));
  return t;
}

Status OutputToShm(ServerContext& ctx, const std::string& name, const Tensor& t, ShmRef ref) {
  TESSERA_RETURN_IF_ERROR(ResolveShm(ctx, &ref));
  if (ref.byte_size < t.nbytes())
    return Status::InvalidArgument("output '" + name + "' needs " + std::to_string(t.nbytes()) +
                                   " bytes, but shared_memory_byte_size is " +
                                   std::to_string(ref.byte_size));
  ShmRegistry& reg = ref.cuda ? static_cast<ShmRegistry&>(ctx.cuda_shm())
                              : static_cast<ShmRegistry&>(ctx.system_shm());
  auto slice = reg.Slice(ref.region, ref.offset, t.nbytes());
  if (!slice.ok()) return slice.status().WithContext("output '" + name + "'");
  if (ref.cuda) return CudaShmRegistry::CopyFromHost(t.raw(), *slice, t.nbytes());
  if (t.nbytes()) std::memcpy(slice->data, t.raw(), t.nbytes());
  return Status::OK();
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff)  // inf / nan
    return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);  // overflow: inf
  if (exp <= 0) {                                              // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // round to nearest even
  return static_cast<uint16_t>(sign | h);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      exp = 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000 | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(x >> 16);
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace tessera::server
