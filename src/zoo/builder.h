// A small helper for writing ONNX graphs node by node with deterministic weights.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace tessera::zoo {

// SplitMix64: tiny, fast, and identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next();
  float Uniform(float lo, float hi);  // [lo, hi)

 private:
  uint64_t s_;
};

struct Attr {
  std::string name;
  enum Kind { kInt, kInts, kFloat, kString } kind = kInt;
  int64_t i = 0;
  std::vector<int64_t> ints;
  float f = 0;
  std::string s;
};
Attr A(const std::string& name, int64_t v);
Attr A(const std::string& name, std::vector<int64_t> v);
Attr Af(const std::string& name, float v);
Attr As(const std::string& name, std::string v);

class GraphBuilder {
 public:
  GraphBuilder(const std::string& name, uint64_t seed);

  // Graph input with a dynamic leading "batch" dim (dims[0] ignored when batch_dynamic).
  std::string Input(const std::string& name, int elem_type, std::vector<int64_t> dims,
                    bool batch_dynamic = true);
  void Output(const std::string& value, int elem_type, std::vector<int64_t> dims,
              bool batch_dynamic = true);
  // Float weight filled U(lo, hi).
  std::string Weight(const std::string& name, std::vector<int64_t> dims, float lo, float hi);
  std::string ConstInts(const std::string& name, std::vector<int64_t> values,
                        std::vector<int64_t> dims = {-1});
  std::string ConstFloat(const std::string& name, float value);
  // Adds a node; returns its (first) output, named "<name>_out" unless given.
  std::string Op(const std::string& op, std::vector<std::string> inputs,
                 std::initializer_list<Attr> attrs = {}, const std::string& name = "",
                 int outputs = 1);
  std::string Unique(const std::string& base);
  onnx::ModelProto Finish(int opset = 17);
  Rng& rng() { return rng_; }

 private:
  onnx::ModelProto model_;
  onnx::GraphProto* g_;
  Rng rng_;
  int counter_ = 0;
};

// Architectures (cnn.cc, bert.cc).
onnx::ModelProto BuildResNet(int depth, uint64_t seed);
onnx::ModelProto BuildMobileNetV2(uint64_t seed);
onnx::ModelProto BuildVgg16(uint64_t seed);
struct BertShape {
  int layers, hidden, heads, ffn, vocab, seq;
};
onnx::ModelProto BuildBert(const std::string& name, const BertShape& s, uint64_t seed);
onnx::ModelProto BuildTinyMlp(uint64_t seed);

}  // namespace tessera::zoo
