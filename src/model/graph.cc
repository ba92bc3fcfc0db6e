#include "tessera/model/graph.h"

#include <queue>
#include <unordered_set>

namespace tessera {

int64_t Node::GetInt(const std::string& a, int64_t dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.i;
}
float Node::GetFloat(const std::string& a, float dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.f;
}
std::string Node::GetString(const std::string& a, const std::string& dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.s;
}
std::vector<int64_t> Node::GetInts(const std::string& a, std::vector<int64_t> dflt) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? dflt : it->second.ints;
}
std::vector<float> Node::GetFloats(const std::string& a) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? std::vector<float>{} : it->second.floats;
}
void Node::SetInt(const std::string& a, int64_t v) {
  Attribute at;
  at.kind = Attribute::Kind::kInt;
  at.i = v;
  attrs[a] = at;
}
void Node::SetFloat(const std::string& a, float v) {
  Attribute at;
  at.kind = Attribute::Kind::kFloat;
  at.f = v;
  attrs[a] = at;
}
void Node::SetString(const std::string& a, std::string v) {
  Attribute at;
  at.kind = Attribute::Kind::kString;
  at.s = std::move(v);
  attrs[a] = at;
}
void Node::SetInts(const std::string& a, std::vector<int64_t> v) {
  Attribute at;
  at.kind = Attribute::Kind::kInts;
  at.ints = std::move(v);
  attrs[a] = at;
}
const std::string& Node::Input(size_t i) const {
  static const std::string kEmpty;
  return i < inputs.size() ? inputs[i] : kEmpty;
}
std::string Node::Describe() const { return op + " node '" + name + "'"; }

const ValueInfo* Graph::FindInput(const std::string& n) const {
  for (const auto& v : inputs)
    if (v.name == n) return &v;
  return nullptr;
}

size_t Graph::WeightBytes() const {
  size_t b = 0;
  for (const auto& [_, t] : initializers) b += t.nbytes();
  return b;
}

Status TopologicalSort(Graph* g) {
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g->nodes.size(); ++i)
    for (const auto& o : g->nodes[i].outputs) {
      if (o.empty()) continue;
      if (producer.count(o) || g->initializers.count(o) || g->FindInput(o))
        return Status::InvalidArgument("value '" + o + "' is produced twice (by " +
                                       g->nodes[i].Describe() + ")");
      producer[o] = i;
    }
  std::vector<int> pending(g->nodes.size(), 0);
  std::vector<std::vector<size_t>> users(g->nodes.size());
  for (size_t i = 0; i < g->nodes.size(); ++i) {
    std::unordered_set<size_t> deps;
    for (const auto& in : g->nodes[i].inputs) {
      if (in.empty() || g->initializers.count(in) || g->FindInput(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end())
        return Status::InvalidArgument(g->nodes[i].Describe() + " uses '" + in +
                                       "', which is neither a graph input, an initializer nor "
                                       "the output of any node (missing initializer?)");
      deps.insert(it->second);
    }
    pending[i] = static_cast<int>(deps.size());
    for (size_t d : deps) users[d].push_back(i);
  }
  // Kahn's algorithm, stable with respect to the original order.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < g->nodes.size(); ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<Node> sorted;
  sorted.reserve(g->nodes.size());
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    sorted.push_back(std::move(g->nodes[i]));
    for (size_t u : users[i])
      if (--pending[u] == 0) ready.push(u);
  }
  if (sorted.size() != g->nodes.size())
    return Status::InvalidArgument("graph has a cycle; ONNX graphs must be acyclic");
  g->nodes = std::move(sorted);
  for (const auto& o : g->outputs)
    if (!producer.count(o.name) && !g->initializers.count(o.name) && !g->FindInput(o.name))
      return Status::InvalidArgument("graph output '" + o.name + "' is never produced");
  return Status::OK();
}

}  // namespace tessera
