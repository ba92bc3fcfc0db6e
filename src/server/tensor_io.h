// Tensor data in and out of requests, the same for HTTP and gRPC: KServe datatype names,
// byte-size checks, shared-memory inputs and outputs, and the typed-element conversions that
// JSON and gRPC's typed contents need.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/context.h"
#include "tessera/core/tensor.h"

namespace tessera::server {

// KServe datatype name ("FP32", "INT64", ...) -> DataType. BYTES is a valid KServe type that no
// Tessera model takes: Unimplemented says so; unknown names are InvalidArgument.
Result<DataType> ParseDatatype(const std::string& name, const std::string& tensor);

// Checks `shape` (non-negative, element count fits) and returns its element count.
Result<int64_t> CheckShape(const std::vector<int64_t>& shape, const std::string& tensor);

// An input tensor over `bytes` bytes at `data` (kept alive by `holder`): the byte count must
// be exactly numel x element size.
Result<Tensor> InputFromBytes(const std::string& name, DataType dtype, const Shape& shape,
                              const void* data, size_t bytes, std::shared_ptr<const void> holder);

// Where a tensor lives in shared memory.
struct ShmRef {
  bool cuda = false;  // which registry: set when found there
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// An input read from a registered region (system: a view, no copy; CUDA: copied to host).
Result<Tensor> InputFromShm(ServerContext& ctx, const std::string& name, DataType dtype,
                            const Shape& shape, ShmRef ref);
// Writes an output into a registered region; InvalidArgument when it does not fit.
Status OutputToShm(ServerContext& ctx, const std::string& name, const Tensor& t, ShmRef ref);
// Finds which registry holds `region` (system first); NotFound when neither does.
Status ResolveShm(ServerContext& ctx, ShmRef* ref);

// Element conversions for typed data (JSON numbers, gRPC typed contents).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t b);

// Per-request options that travel as KServe parameters.
struct OutputRequest {
  std::string name;
  bool binary = false;  // HTTP: send raw bytes after the JSON header
  bool shm = false;
  ShmRef shm_ref;
};

}  // namespace tessera::server
