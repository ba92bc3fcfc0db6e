#include "engine/passes/passes.h"

#include <gtest/gtest.h>

#include <random>

#include "tessera/model/onnx_import.h"
#include "test_graphs.h"

namespace tessera {
namespace {

using testing::kF;
using testing::MakeModel;

TEST(MemoryPlan, ChainReusesBuffers) {
  // a -> b -> c -> d: at most two are alive at once.
  std::vector<passes::BufferRequest> r = {
      {"a", 1000, 0, 1}, {"b", 1000, 1, 2}, {"c", 1000, 2, 3}, {"d", 1000, 3, 4}};
  auto plan = passes::PlanMemory(r);
  EXPECT_EQ(plan.arena_bytes, 2 * 1024u);
  EXPECT_EQ(plan.naive_bytes, 4 * 1024u);
}

TEST(MemoryPlan, BuffersAliveTogetherNeverOverlap) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<passes::BufferRequest> r;
    for (int i = 0; i < 40; ++i) {
      int a = static_cast<int>(rng() % 50), len = static_cast<int>(rng() % 10);
      std::string name = std::to_string(i);  // (not "v" + ...: GCC 12 -Wrestrict false positive)
      r.push_back({name, 1 + rng() % 5000, a, a + len});
    }
    auto plan = passes::PlanMemory(r);
    EXPECT_LE(plan.arena_bytes, plan.naive_bytes);
    for (size_t i = 0; i < r.size(); ++i)
      for (size_t j = i + 1; j < r.size(); ++j) {
        if (r[i].last < r[j].first || r[j].last < r[i].first) continue;
        size_t ai = plan.offsets[r[i].name], aj = plan.offsets[r[j].name];
        bool disjoint = ai + r[i].bytes <= aj || aj + r[j].bytes <= ai;
        EXPECT_TRUE(disjoint) << r[i].name << " and " << r[j].name << " overlap";
        EXPECT_EQ(ai % 64, 0u);
      }
  }
}

TEST(Broadcast, FollowsNumpyRules) {
  EXPECT_EQ(*ops::BroadcastShapes({2, 1, 4}, {3, 1}), (Shape{2, 3, 4}));
  EXPECT_EQ(*ops::BroadcastShapes({}, {5}), (Shape{5}));
  EXPECT_EQ(ops::BroadcastShapes({2, 3}, {4}).status().code(), StatusCode::kInvalidArgument);
}

Graph Import(const std::string& bytes) {
  auto g = ImportOnnx(bytes);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return std::move(g).value();
}

TEST(InferAndFold, FoldsTorchStyleShapeSubgraph) {
  // Reshape target = Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]): all known at compile time.
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 3, 4});
    auto s = b.Op("Shape", {x});
    auto n = b.Op("Gather", {s, b.ConstInts("zero", {0}, {})});
    auto u = b.Op("Unsqueeze", {n, b.ConstInts("ax", {0})});
    auto t = b.Op("Concat", {u, b.ConstInts("rest", {-1})}, {zoo::A("axis", 0)});
    b.Output(b.Op("Reshape", {x, t}), kF, {1, 12});
  }));
  passes::MetaMap meta;
  ASSERT_TRUE(passes::InferAndFold(&g, {{"x", {5, 3, 4}}}, &meta).ok());
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op, "Reshape");
  EXPECT_EQ(meta.at(g.nodes[0].outputs[0]).shape, (Shape{5, 12}));
}

TEST(InferAndFold, UnknownOpNamesOpAndNode) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Output(b.Op("FancyOp", {x}, {}, "my_node"), kF, {1, 4});
  }));
  passes::MetaMap meta;
  Status st = passes::InferAndFold(&g, {{"x", {1, 4}}}, &meta);
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("FancyOp"), std::string::npos);
  EXPECT_NE(st.message().find("my_node"), std::string::npos);
}

// Einsum becomes Transpose / Reshape / MatMul in InferAndFold; the forms it cannot take, and
// equations that do not fit the operands, are clear errors.
TEST(InferAndFold, EinsumBecomesAMatMulAndBadEquationsAreClearErrors) {
  auto einsum = [](const std::string& eq, Shape a, Shape bs) {
    return Import(MakeModel([&](zoo::GraphBuilder& b) {
      auto x = b.Input("a", kF, a);
      auto y = b.Input("b", kF, bs);
      b.Output(b.Op("Einsum", {x, y}, {zoo::As("equation", eq)}, "e"), kF, {});
    }));
  };
  Graph g = einsum("bhid,bhjd->bhij", {2, 3, 4, 5}, {2, 3, 6, 5});
  passes::MetaMap meta;
  ASSERT_TRUE(passes::InferAndFold(&g, {{"a", {2, 3, 4, 5}}, {"b", {2, 3, 6, 5}}}, &meta).ok());
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(n.op);
  EXPECT_EQ(ops, (std::vector<std::string>{"Transpose", "MatMul"}));
  EXPECT_EQ(meta.at(g.outputs[0].name).shape, (Shape{2, 3, 4, 6}));

  struct Case {
    std::string eq;
    Shape a, b;
    StatusCode code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"ii,ij->j", {3, 3}, {3, 4}, StatusCode::kUnimplemented, "diagonal"},
           {"ij,jk->ik", {3, 4}, {5, 6}, StatusCode::kInvalidArgument, "'j' is 4"},
           {"ijk,jk->i", {3, 4}, {4, 5}, StatusCode::kInvalidArgument, "has rank 2"},
           {"ij->ik", {3, 4}, {4, 5}, StatusCode::kInvalidArgument, "operands"},
           {"i1,1k->ik", {3, 4}, {4, 5}, StatusCode::kInvalidArgument, "not a letter"},
           {"ij,jk->iz", {3, 4}, {4, 5}, StatusCode::kInvalidArgument, "'z'"},
       }) {
    Graph bad = einsum(c.eq, c.a, c.b);
    Status st = passes::InferAndFold(&bad, {{"a", c.a}, {"b", c.b}}, &meta);
    EXPECT_EQ(st.code(), c.code) << c.eq << ": " << st.ToString();
    EXPECT_NE(st.message().find(c.says), std::string::npos) << c.eq << ": " << st.ToString();
    EXPECT_NE(st.message().find("'e'"), std::string::npos) << st.ToString();
  }
}

TEST(InferAndFold, InconsistentShapesAreInvalidArgument) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    auto w = b.Weight("w", {5, 3}, -1, 1);
    b.Output(b.Op("MatMul", {x, w}), kF, {1, 3});
  }));
  passes::MetaMap meta;
  Status st = passes::InferAndFold(&g, {{"x", {1, 4}}}, &meta);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("inner dimensions"), std::string::npos);
}

TEST(Fusion, ConvBatchNormReluResidualCollapseIntoOneConv) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4, 6, 6});
    auto w = b.Weight("w", {4, 4, 3, 3}, -0.5, 0.5);
    auto c = b.Op("Conv", {x, w}, {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto bn =
        b.Op("BatchNormalization", {c, b.Weight("g", {4}, 0.5, 1), b.Weight("be", {4}, -0.1, 0.1),
                                    b.Weight("m", {4}, -0.1, 0.1), b.Weight("v", {4}, 0.5, 1.5)});
    auto add = b.Op("Add", {bn, x});
    b.Output(b.Op("Relu", {add}), kF, {1, 4, 6, 6});
  }));
  passes::MetaMap meta;
  ASSERT_TRUE(passes::InferAndFold(&g, {{"x", {1, 4, 6, 6}}}, &meta).ok());
  auto report = passes::Optimize(&g, &meta);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->folded_bn, 1);
  EXPECT_EQ(report->residual, 1);
  EXPECT_EQ(report->activation, 1);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op, "Conv");
  EXPECT_EQ(g.nodes[0].GetString("tessera.act", ""), "Relu");
  EXPECT_EQ(g.nodes[0].Input(3), "x");
}

TEST(Fusion, ErfGeluPatternBecomesGelu) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 8});
    auto d = b.Op("Div", {x, b.ConstFloat("s2", 1.4142135f)});
    auto e = b.Op("Add", {b.Op("Erf", {d}), b.ConstFloat("one", 1.0f)});
    auto y = b.Op("Mul", {b.Op("Mul", {x, e}), b.ConstFloat("half", 0.5f)});
    b.Output(y, kF, {1, 8});
  }));
  passes::MetaMap meta;
  ASSERT_TRUE(passes::InferAndFold(&g, {{"x", {1, 8}}}, &meta).ok());
  EXPECT_EQ(passes::FuseGeluPattern(&g, &meta), 1);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op, "Gelu");
}

TEST(DeadNodes, UnusedBranchIsRemoved) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Op("Neg", {x}, {}, "unused");
    b.Output(b.Op("Relu", {x}), kF, {1, 4});
  }));
  EXPECT_EQ(passes::EliminateDeadNodes(&g), 1);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op, "Relu");
}

}  // namespace
}  // namespace tessera
