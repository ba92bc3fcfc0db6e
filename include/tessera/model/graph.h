// The graph IR every engine compiles from: ONNX-shaped (ops named as in ONNX, values named by
// strings) so import is direct, with room for Tessera's fused ops (attributes prefixed
// "tessera.").
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/core/tensor.h"

namespace tessera {

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kTensor, kStrings };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;
};

struct Node {
  std::string name;                 // unique within the graph (import fills in missing names)
  std::string op;                   // ONNX op_type, e.g. "Conv"
  std::vector<std::string> inputs;  // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;

  bool Has(const std::string& a) const { return attrs.count(a) != 0; }
  int64_t GetInt(const std::string& a, int64_t dflt) const;
  float GetFloat(const std::string& a, float dflt) const;
  std::string GetString(const std::string& a, const std::string& dflt) const;
  std::vector<int64_t> GetInts(const std::string& a, std::vector<int64_t> dflt = {}) const;
  std::vector<float> GetFloats(const std::string& a) const;
  void SetInt(const std::string& a, int64_t v);
  void SetFloat(const std::string& a, float v);
  void SetString(const std::string& a, std::string v);
  void SetInts(const std::string& a, std::vector<int64_t> v);
  // The input at `i`, or "" when absent.
  const std::string& Input(size_t i) const;
  // "Conv 'conv1'" for messages.
  std::string Describe() const;
};

// A graph input or output. dims: -1 marks a dynamic dimension (dim_names holds its symbol).
struct ValueInfo {
  std::string name;
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> dims;
  std::vector<std::string> dim_names;
};

struct Graph {
  std::string name;
  int64_t opset = 0;              // default-domain opset
  std::vector<ValueInfo> inputs;  // runtime inputs only (initializers excluded)
  std::vector<ValueInfo> outputs;
  std::unordered_map<std::string, Tensor> initializers;
  std::vector<Node> nodes;  // topologically ordered after import

  const ValueInfo* FindInput(const std::string& name) const;
  // Total bytes of initializers.
  size_t WeightBytes() const;
};

// Sorts nodes topologically; InvalidArgument names a value that is used but never produced
// (missing initializer or input) or a cycle.
Status TopologicalSort(Graph* g);

}  // namespace tessera
