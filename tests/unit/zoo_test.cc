#include "tessera/zoo/zoo.h"

#include <gtest/gtest.h>

#include "tessera/engine/engine.h"
#include "tessera/model/onnx_import.h"

namespace tessera {
namespace {

TEST(Zoo, UnknownNameListsTheAvailableOnes) {
  auto m = zoo::Build("resnet1000");
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("bert_small"), std::string::npos);
}

TEST(Zoo, SameSeedGivesIdenticalBytesOtherSeedDoesNot) {
  auto a = zoo::Build("bert_small", 0), b = zoo::Build("bert_small", 0),
       c = zoo::Build("bert_small", 1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->onnx_bytes, b->onnx_bytes);
  EXPECT_NE(a->onnx_bytes, c->onnx_bytes);
}

TEST(Zoo, ConfigDescribesTheGraphAndTheModelCompiles) {
  auto m = zoo::Build("mobilenet_v2");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->config.max_batch_size, 8);
  EXPECT_TRUE(m->config.dynamic_batching.has_value());
  ASSERT_EQ(m->config.inputs.size(), 1u);
  EXPECT_EQ(m->config.inputs[0].dims, (std::vector<int64_t>{3, 224, 224}));
  auto g = ImportOnnx(m->onnx_bytes);
  ASSERT_TRUE(g.ok());
  auto exe = CreateCpuEngine()->Compile(*g, [] {
    CompileOptions o;
    o.batch = 2;
    return o;
  }());
  ASSERT_TRUE(exe.ok()) << exe.status().ToString();
  EXPECT_EQ((*exe)->info().outputs[0].shape, (Shape{2, 1000}));
}

}  // namespace
}  // namespace tessera
