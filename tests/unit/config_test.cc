#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tessera/model/repository.h"

namespace tessera {
namespace {
namespace fs = std::filesystem;

TEST(ModelConfig, ParsesTritonConfigAndIgnoresFieldsTesseraDoesNotUse) {
  auto c = ParseModelConfig(R"(
    name: "resnet"
    platform: "onnxruntime_onnx"
    max_batch_size: 16
    input [ { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] } ]
    output [ { name: "probs" data_type: TYPE_FP32 dims: [1000] } ]
    instance_group [ { count: 2 kind: KIND_CPU } ]
    dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 100 }
    parameters { key: "slo_ms" value: { string_value: "25" } }
    optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] } }
    model_warmup [ { name: "w" batch_size: 1 inputs { key: "input" value: { data_type: TYPE_FP32 dims: [3, 224, 224] zero_data: true } } } ]
    some_future_field: 3
  )");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "resnet");
  EXPECT_EQ(c->max_batch_size, 16);
  ASSERT_EQ(c->inputs.size(), 1u);
  EXPECT_EQ(c->inputs[0].dtype, DataType::kFloat32);
  EXPECT_EQ(c->inputs[0].dims, (std::vector<int64_t>{3, 224, 224}));
  EXPECT_EQ(c->parameters.at("slo_ms"), "25");
}

TEST(ModelConfig, InstancesAreCountedOnEveryListedGpu) {
  auto c = ParseModelConfig(
      "name: \"m\"\ninstance_group { count: 2 kind: KIND_GPU gpus: [0, 1] }\n"
      "instance_group { count: 1 kind: KIND_GPU }\n"
      "instance_group { count: 1 kind: KIND_CPU gpus: [3] }\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->InstanceGpus(), (std::vector<int>{0, 0, 1, 1, -1, -1}));
  EXPECT_EQ(c->InstanceCount(), 6);
  EXPECT_EQ(ModelConfig{}.InstanceCount(), 1);
}

TEST(ModelConfig, SyntaxErrorsSayWhere) {
  auto c = ParseModelConfig("name: \"x\"\nmax_batch_size: oops\n");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("line 2"), std::string::npos) << c.status().message();
}

TEST(ModelConfig, RejectsBadDimsAndMissingTypes) {
  EXPECT_FALSE(ParseModelConfig("input [ { name: \"a\" data_type: TYPE_FP32 dims: [0] } ]").ok());
  EXPECT_FALSE(ParseModelConfig("input [ { name: \"a\" dims: [3] } ]").ok());
  EXPECT_FALSE(ParseModelConfig("max_batch_size: -1").ok());
}

TEST(ModelConfig, FormatThenParseRoundTrips) {
  ModelConfig c;
  c.name = "m";
  c.platform = "onnxruntime_onnx";
  c.max_batch_size = 8;
  c.inputs.push_back({"x", DataType::kInt64, {128}});
  c.outputs.push_back({"y", DataType::kFloat32, {128, -1}});
  c.parameters["slo_ms"] = "10";
  auto back = ParseModelConfig(FormatModelConfig(c));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->inputs[0].dtype, DataType::kInt64);
  EXPECT_EQ(back->outputs[0].dims, (std::vector<int64_t>{128, -1}));
  EXPECT_EQ(back->parameters.at("slo_ms"), "10");
}

TEST(ModelConfig, StringsThatAreNotUtf8AreRefusedAtParse) {
  // Found by the config fuzzer: protobuf's text format accepts "\377" in a string, which then
  // breaks the JSON and binary renderings.
  auto c =
      ParseModelConfig("max_batch_size: 4 input [ { name: \"in\\377\" data_type: TYPE_FP32 } ]");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("'input.name' is not valid UTF-8"), std::string::npos)
      << c.status().message();
  auto ok = ParseModelConfig("name: \"r\u00e9sum\u00e9\" max_batch_size: 4");  // UTF-8 is fine
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_NE(ModelConfigJson(*ok).find("\"max_batch_size\":4"), std::string::npos);
}

TEST(ModelConfig, ValidationNamesWhatIsWrong) {
  auto c = ParseModelConfig(
      "name: \"m\" max_batch_size: 4 dynamic_batching { preferred_batch_size: [8] }");
  ASSERT_TRUE(c.ok());
  Status st = ValidateModelConfig(*c);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("preferred_batch_size 8"), std::string::npos) << st.message();
  c = ParseModelConfig("name: \"m\" platform: \"tensorrt_plan\"");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(ValidateModelConfig(*c).code(), StatusCode::kUnimplemented);
  c = ParseModelConfig(
      "name: \"m\" parameters { key: \"slo_ms\" value: { string_value: \"-3\" } }");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(ValidateModelConfig(*c).message().find("slo_ms"), std::string::npos);
}

TEST(ModelConfig, BinaryFormIsTritonsWireFormat) {
  auto c = ParseModelConfig(
      "name: \"m\" max_batch_size: 4 output [ { name: \"y\" data_type: TYPE_FP32 dims: [10] } ]");
  ASSERT_TRUE(c.ok());
  const std::string bytes = ModelConfigProtoBytes(*c);
  // ModelOutput.dims is field 3 in Triton's model_config.proto: tag (3 << 3 | 2) = 0x1a.
  const std::string want_dims = std::string("\x1a\x01\x0a", 3);
  EXPECT_NE(bytes.find(want_dims), std::string::npos);
}

TEST(Repository, FindsLatestVersionAndListsModelsWhenOneIsMissing) {
  fs::path dir = fs::temp_directory_path() / "tessera_repo_test";
  fs::remove_all(dir);
  for (const char* v : {"1", "3", "notaversion"}) {
    fs::create_directories(dir / "alpha" / v);
    std::ofstream(dir / "alpha" / v / "model.onnx") << "x";
  }
  fs::create_directories(dir / "empty_model" / "1");  // no model.onnx: not listed
  auto models = ScanRepository(dir.string());
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].version, 3);
  auto missing = FindModel(dir.string(), "beta");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("alpha"), std::string::npos);
  EXPECT_EQ(ScanRepository((dir / "nope").string()).status().code(), StatusCode::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tessera
