// ONNX → graph IR, on Debian's libonnx protobuf types.
#pragma once

#include <string>

#include "tessera/model/graph.h"

namespace onnx {
class TensorProto;
}

namespace tessera {

constexpr int64_t kMinOpset = 11;
constexpr int64_t kMaxOpset = 18;

// Parses a serialized ModelProto. Errors: InvalidArgument for malformed or truncated bytes,
// inconsistent tensors, missing values; Unimplemented for external data, non-default domains or
// opsets outside [kMinOpset, kMaxOpset]. Never crashes on bad bytes.
Result<Graph> ImportOnnx(const std::string& bytes);
// Reads and parses a file; NotFound when it cannot be opened.
Result<Graph> ImportOnnxFile(const std::string& path);

// TensorProto <-> Tensor (dense, in-memory data only).
Result<Tensor> TensorFromProto(const onnx::TensorProto& p);
void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* p);
Result<DataType> DataTypeFromOnnx(int onnx_type);
int DataTypeToOnnx(DataType t);

}  // namespace tessera
