// Small ONNX graphs for unit tests, written with the zoo's GraphBuilder.
#pragma once

#include <functional>
#include <string>

#include "zoo/builder.h"

namespace tessera::testing {

constexpr int kF = onnx::TensorProto::FLOAT;

// Serializes a model built by `body` (which adds nodes, inputs and outputs).
inline std::string MakeModel(const std::function<void(zoo::GraphBuilder&)>& body, int opset = 17) {
  zoo::GraphBuilder b("test", 42);
  body(b);
  std::string bytes;
  b.Finish(opset).SerializeToString(&bytes);
  return bytes;
}

}  // namespace tessera::testing
