#include <cstdio>

#include "tessera/engine/engine.h"

namespace tessera {

ConstantCache::ConstantCache(const Graph& model) {
  for (const auto& [_, t] : model.initializers) {
    anchors_.push_back(t);
    if (t.raw()) stable_.insert(t.raw());
  }
}

bool ConstantCache::IsStable(const Tensor& t) const {
  std::lock_guard<std::mutex> lock(mu_);
  return t.raw() && stable_.count(t.raw());
}

Tensor ConstantCache::GetOrMake(const std::string& tag,
                                std::initializer_list<const Tensor*> sources,
                                const std::function<Tensor()>& make) {
  std::string key = tag;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Tensor* s : sources) {
      if (!s) {
        key += "|-";
        continue;
      }
      if (!s->raw() || !stable_.count(s->raw())) return make();  // unstable: not cached
      char buf[48];
      std::snprintf(buf, sizeof(buf), "|%p:%d", s->raw(), static_cast<int>(s->dtype()));
      key += buf + ShapeToString(s->shape());
    }
    auto it = made_.find(key);
    if (it != made_.end()) return it->second;
  }
  Tensor t = make();  // outside the lock: derivations can be slow
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = made_.emplace(key, t);
  if (fresh) {
    bytes_ += t.nbytes();
    if (t.raw()) stable_.insert(t.raw());
  }
  return it->second;
}

size_t ConstantCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ConstantCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return made_.size();
}

}  // namespace tessera
