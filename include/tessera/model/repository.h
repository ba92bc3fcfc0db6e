// Triton-layout model repositories: DIR/<model>/config.pbtxt and DIR/<model>/<version>/model.onnx.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tessera/model/graph.h"

namespace tessera {

struct TensorConfig {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> dims;  // without the batch dim when max_batch_size > 0; -1 = variable
};

// What Tessera uses of a model's config.pbtxt.
struct ModelConfig {
  std::string name;
  std::string platform;  // "onnxruntime_onnx" for ONNX models
  int max_batch_size = 0;
  std::vector<TensorConfig> inputs, outputs;
  std::map<std::string, std::string> parameters;  // Tessera settings (slo_ms, ...)
  std::string default_model_filename = "model.onnx";
};

// Parses config.pbtxt text (protobuf text format, Triton's field names). InvalidArgument says
// where the text is wrong. Fields Tessera does not use are accepted and ignored.
Result<ModelConfig> ParseModelConfig(const std::string& text);
// Renders a config back to config.pbtxt text.
std::string FormatModelConfig(const ModelConfig& config);
// Derives a config from an ONNX graph (name, inputs/outputs, max_batch_size from a dynamic
// leading dim) for a model directory without config.pbtxt.
ModelConfig DeriveModelConfig(const std::string& name, const Graph& graph, int max_batch_size);

struct ModelLocation {
  std::string name;
  std::string dir;         // DIR/<model>
  int64_t version = 0;     // the latest numeric version present
  std::string model_path;  // DIR/<model>/<version>/model.onnx
  bool has_config = false;
};

// Lists the models of a repository (sorted by name). NotFound when DIR does not exist.
Result<std::vector<ModelLocation>> ScanRepository(const std::string& dir);
// Finds one model; NotFound lists the models that do exist.
Result<ModelLocation> FindModel(const std::string& dir, const std::string& name);
// Loads config (parsed or derived) and graph of a model; the config's name must match.
Status LoadModel(const ModelLocation& loc, ModelConfig* config, Graph* graph);

}  // namespace tessera
