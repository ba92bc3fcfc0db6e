#include "engine/ops/ops.h"

#include <algorithm>
#include <map>
#include <mutex>

namespace tessera::ops {
namespace {

std::map<std::string, OpDef>& Registry() {
  static std::map<std::string, OpDef> r;
  return r;
}

void EnsureRegistered() {
  static std::once_flag once;
  std::call_once(once, [] {
    RegisterElementwise();
    RegisterMovement();
    RegisterReduceNorm();
    RegisterNn();
    RegisterIndexing();
  });
}

}  // namespace

void Register(const std::string& op, OpDef def) { Registry()[op] = std::move(def); }

const OpDef* FindOp(const std::string& op) {
  EnsureRegistered();
  auto it = Registry().find(op);
  return it == Registry().end() ? nullptr : &it->second;
}

std::vector<std::string> SupportedOps() {
  EnsureRegistered();
  std::vector<std::string> names;
  for (const auto& [k, _] : Registry())
    if (k.rfind("Tessera", 0) != 0) names.push_back(k);
  // Rewritten into the ops above when a graph is prepared (passes::DecomposeEinsum).
  names.push_back("Einsum");
  std::sort(names.begin(), names.end());
  return names;
}

Result<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      return Status::InvalidArgument("shapes " + ShapeToString(a) + " and " + ShapeToString(b) +
                                     " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t NormalizeAxis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

Status CheckInputs(const Node& n, const std::vector<const ValueMeta*>& in, size_t min_count) {
  if (in.size() < min_count)
    return Status::InvalidArgument(n.Describe() + " needs at least " + std::to_string(min_count) +
                                   " inputs, has " + std::to_string(in.size()));
  for (size_t i = 0; i < min_count; ++i)
    if (!in[i])
      return Status::InvalidArgument(n.Describe() + ": required input " + std::to_string(i) +
                                     " is missing");
  return Status::OK();
}

Result<std::vector<int64_t>> ConstInts(const Node& n, const std::vector<const ValueMeta*>& in,
                                       size_t index) {
  if (index >= in.size() || !in[index])
    return Status::InvalidArgument(n.Describe() + ": input " + std::to_string(index) +
                                   " is missing");
  const Tensor* t = in[index]->constant;
  if (!t)
    return Status::Unimplemented(n.Describe() + ": input " + std::to_string(index) + " ('" +
                                 n.Input(index) +
                                 "') must be known at compile time (data-dependent shapes are "
                                 "not supported)");
  std::vector<int64_t> v(t->numel());
  for (int64_t i = 0; i < t->numel(); ++i) v[i] = t->GetAsInt64(i);
  return v;
}

std::vector<const ValueMeta*> MetasOf(const std::vector<const Tensor*>& in,
                                      std::vector<ValueMeta>* storage) {
  storage->assign(in.size(), ValueMeta{});
  std::vector<const ValueMeta*> out(in.size(), nullptr);
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i]) {
      (*storage)[i] = {in[i]->dtype(), in[i]->shape(), in[i]};
      out[i] = &(*storage)[i];
    }
  return out;
}

bool WorthParallel(int64_t work) { return work >= (1 << 15); }

}  // namespace tessera::ops
