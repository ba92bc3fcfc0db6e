#include "tessera/zoo/zoo.h"

#include <filesystem>
#include <fstream>

#include "tessera/core/random.h"
#include "tessera/model/onnx_import.h"
#include "zoo/builder.h"

namespace tessera::zoo {
namespace fs = std::filesystem;

const std::vector<ZooEntry>& Entries() {
  static const std::vector<ZooEntry> kEntries = {
      {"resnet18", "ResNet-18, 224x224 RGB, 1000 classes (11.7 M params)", true},
      {"resnet50", "ResNet-50, 224x224 RGB, 1000 classes (25.6 M params)", true},
      {"mobilenet_v2", "MobileNetV2, 224x224 RGB, 1000 classes (3.5 M params)", true},
      {"vgg16", "VGG-16, 224x224 RGB, 1000 classes (138 M params)", false},
      {"bert_base", "BERT-base encoder, 12 layers, hidden 768, seq 128 (110 M params)", true},
      {"bert_small", "Small BERT encoder, 4 layers, hidden 256, seq 128 (6 M params)", true},
      {"tiny_mlp", "Two-layer MLP, 16 -> 64 -> 16 (2 K params): for protocol and overhead tests",
       true},
  };
  return kEntries;
}

Result<BuiltModel> Build(const std::string& name, uint64_t seed) {
  onnx::ModelProto m;
  // Each model gets its own stream of weights, independent of build order.
  uint64_t s = Fnv1a(name);
  s ^= seed * 0x9E3779B97F4A7C15ull;
  if (name == "resnet18")
    m = BuildResNet(18, s);
  else if (name == "resnet50")
    m = BuildResNet(50, s);
  else if (name == "mobilenet_v2")
    m = BuildMobileNetV2(s);
  else if (name == "vgg16")
    m = BuildVgg16(s);
  else if (name == "bert_base")
    m = BuildBert(name, {12, 768, 12, 3072, 30522, 128}, s);
  else if (name == "bert_small")
    m = BuildBert(name, {4, 256, 4, 1024, 8192, 128}, s);
  else if (name == "tiny_mlp")
    m = BuildTinyMlp(s);
  else {
    std::string names;
    for (const auto& e : Entries()) names += (names.empty() ? "" : ", ") + e.name;
    return Status::NotFound("no zoo model '" + name + "'; available: " + names);
  }
  BuiltModel out;
  if (!m.SerializeToString(&out.onnx_bytes))
    return Status::Internal("could not serialize zoo model '" + name + "'");
  // The config comes from the graph we just wrote, so the two can never disagree.
  auto g = ImportOnnx(out.onnx_bytes);
  if (!g.ok()) return g.status().WithContext("zoo model '" + name + "' does not re-import");
  // Batches up to 8 (to 64 for the tiny model), Triton's dynamic batching without a delay:
  // requests that queue while an execution runs go together into the next.
  out.config = DeriveModelConfig(name, *g, name == "tiny_mlp" ? 64 : 8);
  out.config.dynamic_batching = DynamicBatching{};
  out.config.proto_bytes = ModelConfigProtoBytes(out.config);
  return out;
}

Status WriteRepository(const std::string& dir, const std::vector<std::string>& models,
                       uint64_t seed, const std::function<void(const std::string&)>& progress) {
  for (const auto& name : models) {
    TESSERA_ASSIGN_OR_RETURN(BuiltModel m, Build(name, seed));
    const fs::path mdir = fs::path(dir) / name;
    std::error_code ec;
    fs::create_directories(mdir / "1", ec);
    if (ec)
      return Status::Unavailable("cannot create '" + (mdir / "1").string() + "': " + ec.message());
    {
      std::ofstream f(mdir / "1" / "model.onnx", std::ios::binary);
      f.write(m.onnx_bytes.data(), static_cast<std::streamsize>(m.onnx_bytes.size()));
      if (!f) return Status::Unavailable("cannot write model.onnx for '" + name + "'");
    }
    {
      std::ofstream f(mdir / "config.pbtxt");
      f << FormatModelConfig(m.config);
      if (!f) return Status::Unavailable("cannot write config.pbtxt for '" + name + "'");
    }
    if (progress)
      progress(name + ": " + std::to_string(m.onnx_bytes.size() / (1024 * 1024)) + " MiB -> " +
               (mdir / "1" / "model.onnx").string());
  }
  return Status::OK();
}

}  // namespace tessera::zoo
