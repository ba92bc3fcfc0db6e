// Triton-layout model repositories: DIR/<model>/config.pbtxt and DIR/<model>/<version>/model.onnx.
#pragma once

#include <string>
#include <vector>

#include "tessera/model/config.h"
#include "tessera/model/graph.h"

namespace tessera {

struct ModelLocation {
  std::string name;
  std::string dir;                // DIR/<model>
  std::vector<int64_t> versions;  // numeric version directories holding an .onnx file, ascending
  int64_t version = 0;            // the latest of them
  std::string model_path;         // DIR/<model>/<version>/model.onnx for the latest
  bool has_config = false;
};

// Lists the models of a repository (sorted by name). NotFound when DIR does not exist.
Result<std::vector<ModelLocation>> ScanRepository(const std::string& dir);
// Finds one model; NotFound lists the models that do exist.
Result<ModelLocation> FindModel(const std::string& dir, const std::string& name);
// Loads config (parsed or derived), completed against and checked with the graph of the latest
// version; the config's name must match the directory.
Status LoadModel(const ModelLocation& loc, ModelConfig* config, Graph* graph);
// Reads config.pbtxt (the directory name fills a missing name); NotFound when there is none.
Result<ModelConfig> ReadModelConfig(const ModelLocation& loc);
// Imports one version's graph (file named by config.default_model_filename).
Result<Graph> LoadModelGraph(const ModelLocation& loc, int64_t version, const ModelConfig& config);

}  // namespace tessera
