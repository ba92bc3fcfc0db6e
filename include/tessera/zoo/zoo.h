// The model zoo: standard architectures written as ONNX with deterministic random weights, in a
// Triton-layout repository. Built in C++ (libonnx protobuf types); nothing is downloaded.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tessera/model/repository.h"

namespace tessera::zoo {

struct ZooEntry {
  std::string name;
  std::string description;
  bool in_demo = false;  // part of the default demo repository
};

// Every model the zoo can build, in a stable order.
const std::vector<ZooEntry>& Entries();

struct BuiltModel {
  std::string onnx_bytes;  // serialized ModelProto (opset 17)
  ModelConfig config;      // what config.pbtxt says
};

// Builds one model. NotFound (listing the valid names) for an unknown name. `seed` fixes the
// weights: the same name and seed always give byte-identical files.
Result<BuiltModel> Build(const std::string& name, uint64_t seed = 0);

// Writes DIR/<model>/config.pbtxt and DIR/<model>/1/model.onnx for each model. Reports progress
// through `progress` (one line per model) when given.
Status WriteRepository(const std::string& dir, const std::vector<std::string>& models,
                       uint64_t seed = 0,
                       const std::function<void(const std::string&)>& progress = nullptr);

}  // namespace tessera::zoo
