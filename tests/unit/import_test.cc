#include <gtest/gtest.h>

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

TEST(Import, ExternalDataAndForeignDomainsAreUnimplemented) {
  onnx::ModelProto m;
  m.ParseFromString(ReluModel());
  auto* init = m.mutable_graph()->add_initializer();
  init->set_name("ext");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  EXPECT_EQ(ImportOnnx(m.SerializeAsString()).status().code(), StatusCode::kUnimplemented);

  onnx::ModelProto d;
  d.ParseFromString(ReluModel());
  d.mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
  auto g = ImportOnnx(d.SerializeAsString());
  EXPECT_EQ(g.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(g.status().message().find("com.microsoft"), std::string::npos);
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
