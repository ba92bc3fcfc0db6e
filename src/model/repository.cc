#include "tessera/model/repository.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tessera/model/onnx_import.h"

namespace tessera {
namespace fs = std::filesystem;

Result<std::vector<ModelLocation>> ScanRepository(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status::NotFound("model repository '" + dir + "' is not a directory");
  std::vector<ModelLocation> models;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_directory()) continue;
    ModelLocation loc;
    loc.name = e.path().filename().string();
    loc.dir = e.path().string();
    loc.has_config = fs::exists(e.path() / "config.pbtxt");
    for (const auto& v : fs::directory_iterator(e.path(), ec)) {
      const std::string vn = v.path().filename().string();
      if (!v.is_directory() || vn.empty() || !std::all_of(vn.begin(), vn.end(), ::isdigit))
        continue;
      int64_t ver = std::stoll(vn);
      if (ver > loc.version && fs::exists(v.path() / "model.onnx")) {
        loc.version = ver;
        loc.model_path = (v.path() / "model.onnx").string();
      }
    }
    if (loc.version > 0) models.push_back(loc);
  }
  std::sort(models.begin(), models.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return models;
}

Result<ModelLocation> FindModel(const std::string& dir, const std::string& name) {
  TESSERA_ASSIGN_OR_RETURN(auto models, ScanRepository(dir));
  std::string names;
  for (const auto& m : models) {
    if (m.name == name) return m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  return Status::NotFound("no model '" + name + "' in repository '" + dir +
                          "' (models: " + (names.empty() ? "none" : names) + ")");
}

Status LoadModel(const ModelLocation& loc, ModelConfig* config, Graph* graph) {
  TESSERA_ASSIGN_OR_RETURN(*graph, ImportOnnxFile(loc.model_path));
  if (loc.has_config) {
    std::ifstream f(fs::path(loc.dir) / "config.pbtxt");
    std::stringstream ss;
    ss << f.rdbuf();
    auto c = ParseModelConfig(ss.str());
    if (!c.ok()) return c.status().WithContext("model '" + loc.name + "'");
    *config = std::move(c).value();
    if (config->name.empty()) config->name = loc.name;
    if (config->name != loc.name)
      return Status::InvalidArgument("model '" + loc.name + "': config.pbtxt names it '" +
                                     config->name + "'; the name must match the directory");
  } else {
    *config = DeriveModelConfig(loc.name, *graph, 8);
  }
  return Status::OK();
}

}  // namespace tessera
