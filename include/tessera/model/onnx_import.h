// ONNX → graph IR, on Debian's libonnx protobuf types.
#pragma once

#include <string>

#include "tessera/model/graph.h"

namespace onnx {
class TensorProto;
}

namespace tessera {

constexpr int64_t kMinOpset = 11;
// Opsets 19-22 changed no op Tessera runs except by new attributes and modes (Resize's
// half_pixel_symmetric, AveragePool's dilations, Pad's wrap: supported or refused by name) and
// by new element types; opset 20 added Gelu.
constexpr int64_t kMaxOpset = 22;

// Parses a serialized ModelProto. Errors: InvalidArgument for malformed or truncated bytes,
// inconsistent tensors, missing values, and external data (bytes have no directory to find its
// files in); Unimplemented for non-default domains or opsets outside [kMinOpset, kMaxOpset].
// Never crashes on bad bytes.
Result<Graph> ImportOnnx(const std::string& bytes);
// Reads and parses a file; NotFound when it cannot be opened. Tensors kept as ONNX external data
// (what torch.onnx.export writes by default) are read from the files they name, relative to the
// model file's directory and inside it: InvalidArgument for a location outside it or a range
// past a file's end, NotFound for a missing file.
Result<Graph> ImportOnnxFile(const std::string& path);

// TensorProto <-> Tensor (dense, in-memory data only).
Result<Tensor> TensorFromProto(const onnx::TensorProto& p);
void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* p);
Result<DataType> DataTypeFromOnnx(int onnx_type);
int DataTypeToOnnx(DataType t);

}  // namespace tessera
