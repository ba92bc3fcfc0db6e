// Reading a ModelInferRequest off the wire with its tensor bytes in body memory.
//
// Parsed as a protobuf message, raw_input_contents would land in heap strings and then be
// copied again into pinned buffers on their way to a GPU. ReadInferRequest walks the message's
// top-level fields itself: each raw_input_contents entry is copied once, from gRPC's receive
// slices straight into memory from AllocateBodyBytes (pinned on a sliced GPU, see
// tessera/core/body.h), so a request that fills its batch is DMA'd from where it landed; the
// other fields (names, shapes, parameters: small) are parsed by protobuf as usual. A message
// smaller than the body memory's threshold (BodyMemoryMinBytes: every message on a server
// without GPUs) would land on the heap either way: protobuf parses it whole, as gRPC would,
// and the raw entries are handed over in their own strings.
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <memory>
#include <vector>

#include "grpc_service.pb.h"
#include "tessera/core/status.h"

namespace tessera::server {

// One raw_input_contents entry: `bytes` at `data`, kept alive by `holder` (null when the
// caller keeps the memory alive itself).
struct RawInput {
  const void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<const void> holder;
};

struct WireInferRequest {
  inference::ModelInferRequest meta;  // every field but raw_input_contents
  std::vector<RawInput> raw;          // raw_input_contents, in order, each in body memory
};

// InvalidArgument (with what was wrong) for bytes that are not a ModelInferRequest.
Result<WireInferRequest> ReadInferRequest(const grpc::ByteBuffer& wire);

}  // namespace tessera::server
