#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tessera/model/onnx_import.h"
#include "test_graphs.h"

namespace tessera {
namespace {

using testing::kF;
using testing::MakeModel;

std::string ReluModel() {
  return MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Output(b.Op("Relu", {x}), kF, {1, 4});
  });
}

TEST(Import, ReadsInputsOutputsAndNodes) {
  auto g = ImportOnnx(ReluModel());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->inputs.size(), 1u);
  EXPECT_EQ(g->inputs[0].dims, (std::vector<int64_t>{-1, 4}));
  EXPECT_EQ(g->inputs[0].dim_names[0], "batch");
  ASSERT_EQ(g->nodes.size(), 1u);
  EXPECT_EQ(g->nodes[0].op, "Relu");
  EXPECT_EQ(g->opset, 17);
}

TEST(Import, EmptyGarbageAndTruncatedBytesAreInvalidArgument) {
  EXPECT_EQ(ImportOnnx("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ImportOnnx(std::string(100, '\xff')).status().code(), StatusCode::kInvalidArgument);
  std::string m = MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 64});
    auto w = b.Weight("w", {64, 64}, -1, 1);
    b.Output(b.Op("MatMul", {x, w}), kF, {1, 64});
  });
  for (size_t cut : {m.size() / 2, m.size() - 3}) {
    auto g = ImportOnnx(m.substr(0, cut));
    EXPECT_FALSE(g.ok()) << "cut at " << cut;
  }
}

TEST(Import, OpsetOutsideSupportedRangeIsUnimplemented) {
  std::string m = MakeModel(
      [](zoo::GraphBuilder& b) {
        auto x = b.Input("x", kF, {1, 4});
        b.Output(b.Op("Relu", {x}), kF, {1, 4});
      },
      9);
  auto g = ImportOnnx(m);
  EXPECT_EQ(g.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(g.status().message().find("opset 9"), std::string::npos);
}

TEST(Import, MissingInitializerNamesTheValue) {
  std::string m = MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Output(b.Op("Add", {x, "bias_never_defined"}), kF, {1, 4});
  });
  auto g = ImportOnnx(m);
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("bias_never_defined"), std::string::npos);
}

TEST(Import, ForeignDomainsAreUnimplemented) {
  onnx::ModelProto d;
  d.ParseFromString(ReluModel());
  d.mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
  auto g = ImportOnnx(d.SerializeAsString());
  EXPECT_EQ(g.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(g.status().message().find("com.microsoft"), std::string::npos);
}

// A model whose weight "w" (2 x 3 floats, 1..6) sits in `file` at `offset`, as ONNX external
// data, written into `dir` as model.onnx: y = x + w.
class ExternalData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera_external_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "weights");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& location, int64_t offset, int64_t length = -1,
                    bool write_data = true) {
    onnx::ModelProto m;
    m.ParseFromString(MakeModel([](zoo::GraphBuilder& b) {
      auto x = b.Input("x", kF, {2, 3});
      b.Output(b.Op("Add", {x, "w"}), kF, {2, 3});
    }));
    auto* w = m.mutable_graph()->add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(2);
    w->add_dims(3);
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto kv = [&](const char* k, const std::string& v) {
      auto* e = w->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    kv("location", location);
    kv("offset", std::to_string(offset));
    if (length >= 0) kv("length", std::to_string(length));
    if (write_data) {
      std::string bytes(static_cast<size_t>(offset), '\x7f');  // what comes before: not w
      const float v[6] = {1, 2, 3, 4, 5, 6};
      bytes.append(reinterpret_cast<const char*>(v), sizeof(v));
      std::ofstream(dir_ / location, std::ios::binary) << bytes;
    }
    const auto path = (dir_ / "model.onnx").string();
    std::ofstream(path, std::ios::binary) << m.SerializeAsString();
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ExternalData, WeightsAreReadFromTheFileBesideTheModel) {
  auto g = ImportOnnxFile(Write("weights/w.bin", 64, 24));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const Tensor& w = g->initializers.at("w");
  ASSERT_EQ(w.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(w.data<float>()[i], float(i + 1));
  // Without a length the tensor's own size is read.
  g = ImportOnnxFile(Write("w.bin", 0));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->initializers.at("w").data<float>()[5], 6.0f);
}

TEST_F(ExternalData, BadLocationsAndRangesAreClearErrors) {
  struct Case {
    std::string location;
    int64_t offset, length;
    bool write;
    StatusCode code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"../w.bin", 0, -1, false, StatusCode::kInvalidArgument, "inside the model's directory"},
           {"/etc/passwd", 0, -1, false, StatusCode::kInvalidArgument, "inside the model's"},
           {"missing.bin", 0, -1, false, StatusCode::kNotFound, "missing.bin"},
           {"w.bin", 0, 28, true, StatusCode::kInvalidArgument, "length 28 bytes, expected 24"},
           {"w.bin", 8, -1, true, StatusCode::kInvalidArgument, "runs past the end"},
       }) {
    const std::string path = Write(c.location, c.write ? 0 : c.offset, c.length, c.write);
    if (c.offset && c.write) {  // the file holds 24 bytes; ask from further on
      onnx::ModelProto m;
      std::ifstream in(path, std::ios::binary);
      ASSERT_TRUE(m.ParseFromIstream(&in));
      in.close();
      for (auto& e : *m.mutable_graph()->mutable_initializer(0)->mutable_external_data())
        if (e.key() == "offset") e.set_value(std::to_string(c.offset));
      std::ofstream(path, std::ios::binary | std::ios::trunc) << m.SerializeAsString();
    }
    auto g = ImportOnnxFile(path);
    ASSERT_FALSE(g.ok()) << c.location;
    EXPECT_EQ(g.status().code(), c.code) << g.status().ToString();
    EXPECT_NE(g.status().message().find(c.says), std::string::npos) << g.status().ToString();
    EXPECT_NE(g.status().message().find("initializer 'w'"), std::string::npos)
        << g.status().ToString();
  }
}

TEST_F(ExternalData, AModelGivenAsBytesCannotResolveIt) {
  const std::string path = Write("w.bin", 0);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto g = ImportOnnx(bytes);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("load the model from its file"), std::string::npos)
      << g.status().ToString();
}

TEST(Import, InitializerWithWrongByteCountIsRejected) {
  onnx::ModelProto m;
  m.ParseFromString(ReluModel());
  auto* init = m.mutable_graph()->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(1000000000);
  init->set_raw_data(std::string(8, '\0'));
  auto g = ImportOnnx(m.SerializeAsString());
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("raw bytes"), std::string::npos);
}

TEST(Import, ConstantNodesBecomeInitializers) {
  onnx::ModelProto m;
  m.ParseFromString(ReluModel());
  auto* c = m.mutable_graph()->add_node();
  c->set_op_type("Constant");
  c->add_output("k");
  auto* a = c->add_attribute();
  a->set_name("value_ints");
  a->set_type(onnx::AttributeProto::INTS);
  a->add_ints(3);
  a->add_ints(4);
  auto g = ImportOnnx(m.SerializeAsString());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_TRUE(g->initializers.count("k"));
  EXPECT_EQ(g->initializers.at("k").data<int64_t>()[1], 4);
  EXPECT_EQ(g->nodes.size(), 1u);
}

TEST(Import, ReordersNodesTopologically) {
  onnx::ModelProto m;
  m.ParseFromString(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    auto y = b.Op("Relu", {x}, {}, "first");
    b.Output(b.Op("Neg", {y}, {}, "second"), kF, {1, 4});
  }));
  m.mutable_graph()->mutable_node()->SwapElements(0, 1);
  auto g = ImportOnnx(m.SerializeAsString());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->nodes[0].name, "first");
}

}  // namespace
}  // namespace tessera
