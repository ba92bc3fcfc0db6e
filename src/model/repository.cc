#include "tessera/model/repository.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tessera/model/onnx_import.h"

namespace tessera {
namespace fs = std::filesystem;

namespace {

bool IsVersionName(const std::string& s) {
  return !s.empty() && s.size() < 18 && std::all_of(s.begin(), s.end(), ::isdigit);
}

bool HoldsOnnx(const fs::path& dir) {
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec))
    if (f.path().extension() == ".onnx") return true;
  return false;
}

}  // namespace

Result<std::vector<ModelLocation>> ScanRepository(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status::NotFound("model repository '" + dir + "' is not a directory");
  std::vector<ModelLocation> models;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_directory()) continue;
    ModelLocation loc;
    loc.name = e.path().filename().string();
    if (loc.name.empty() || loc.name[0] == '.') continue;
    loc.dir = e.path().string();
    loc.has_config = fs::exists(e.path() / "config.pbtxt");
    for (const auto& v : fs::directory_iterator(e.path(), ec)) {
      const std::string vn = v.path().filename().string();
      if (!v.is_directory() || !IsVersionName(vn) || !HoldsOnnx(v.path())) continue;
      loc.versions.push_back(std::stoll(vn));
    }
    std::sort(loc.versions.begin(), loc.versions.end());
    if (loc.versions.empty()) continue;
    loc.version = loc.versions.back();
    loc.model_path = (e.path() / std::to_string(loc.version) / "model.onnx").string();
    models.push_back(loc);
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

Result<ModelConfig> ReadModelConfig(const ModelLocation& loc) {
  if (!loc.has_config) return Status::NotFound("model '" + loc.name + "' has no config.pbtxt");
  std::ifstream f(fs::path(loc.dir) / "config.pbtxt");
  if (!f) return Status::NotFound("cannot read " + loc.dir + "/config.pbtxt");
  std::stringstream ss;
  ss << f.rdbuf();
  auto c = ParseModelConfig(ss.str());
  if (!c.ok()) return c.status().WithContext("model '" + loc.name + "'");
  if (c->name.empty()) c->name = loc.name;
  if (c->name != loc.name)
    return Status::InvalidArgument("model '" + loc.name + "': config.pbtxt names it '" + c->name +
                                   "'; the name must match the directory");
  return c;
}

Result<Graph> LoadModelGraph(const ModelLocation& loc, int64_t version, const ModelConfig& config) {
  const fs::path p = fs::path(loc.dir) / std::to_string(version) / config.default_model_filename;
  std::error_code ec;
  if (!fs::exists(p, ec))
    return Status::NotFound("model '" + loc.name + "' version " + std::to_string(version) +
                            ": no file '" + config.default_model_filename + "' in " +
                            p.parent_path().string());
  auto g = ImportOnnxFile(p.string());
  if (!g.ok())
    return g.status().WithContext("model '" + loc.name + "' version " + std::to_string(version));
  return g;
}

Status LoadModel(const ModelLocation& loc, ModelConfig* config, Graph* graph) {
  if (loc.has_config) {
    TESSERA_ASSIGN_OR_RETURN(*config, ReadModelConfig(loc));
    TESSERA_ASSIGN_OR_RETURN(*graph, LoadModelGraph(loc, loc.version, *config));
  } else {
    ModelConfig dflt;
    TESSERA_ASSIGN_OR_RETURN(*graph, LoadModelGraph(loc, loc.version, dflt));
    *config = DeriveModelConfig(loc.name, *graph, 8);
  }
  return CompleteModelConfig(*graph, config);
}

}  // namespace tessera
