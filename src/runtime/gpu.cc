#include "tessera/runtime/gpu.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <numeric>

namespace tessera::runtime {

const char* CompletionName(Completion c) {
  switch (c) {
    case Completion::kEvent:
      return "event";
    case Completion::kSync:
      return "sync";
    case Completion::kSpin:
      return "spin";
  }
  return "event";
}

Result<Completion> ParseCompletion(const std::string& name) {
  if (name == "event") return Completion::kEvent;
  if (name == "sync") return Completion::kSync;
  if (name == "spin") return Completion::kSpin;
  return Status::InvalidArgument("completion mode '" + name + "'; expected event, sync or spin");
}

Notifier::Notifier(std::string name) : name_(std::move(name)), thread_([this] { Loop(); }) {}

Notifier::~Notifier() { Stop(); }

void Notifier::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void Notifier::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Notifier::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything posted has run
    auto fn = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    fn();
    lock.lock();
  }
}

size_t PinnedPool::ClassOf(size_t bytes) {
  size_t c = 4096;
  while (c < bytes) c <<= 1;
  return c;
}

Result<void*> PinnedPool::Get(size_t bytes) {
  const size_t c = ClassOf(std::max<size_t>(bytes, 1));
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(c);
    if (it != free_.end()) {
      void* p = it->second;
      free_.erase(it);
      return p;
    }
  }
  auto p = device_->HostAlloc(c);
  if (!p.ok()) return p.status().WithContext(fmt::format("pinned host memory ({} bytes)", c));
  std::lock_guard<std::mutex> lock(mu_);
  size_of_[*p] = c;
  held_ += c;
  return *p;
}

bool PinnedPool::Put(void* p) {
  if (!p) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = size_of_.find(p);
  if (it == size_of_.end()) return false;
  free_.emplace(it->second, p);
  return true;
}

size_t PinnedPool::held_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

PinnedPool::~PinnedPool() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.size() != size_of_.size())
    spdlog::warn("pinned pool: {} buffer(s) still in use at shutdown",
                 size_of_.size() - free_.size());
  for (const auto& [p, _] : size_of_) device_->HostFree(p);
}

GpuSlices::GpuSlices(std::shared_ptr<GpuDevice> device)
    : device_(std::move(device)),
      table_(device_->layout(), &device_->provider()),
      pinned_(device_.get()) {}

GpuSlices::~GpuSlices() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shared_place_) device_->provider().Destroy(shared_place_);
}

Result<SliceLease> GpuSlices::Acquire(const std::string& owner, int groups) {
  std::lock_guard<std::mutex> lock(mu_);
  const GpuLayout& gpu = table_.gpu();
  if (groups == 0) {
    if (!shared_place_) {
      std::vector<int> all(gpu.groups());
      std::iota(all.begin(), all.end(), 0);
      TESSERA_ASSIGN_OR_RETURN(shared_place_, device_->provider().Create(all));
    }
    ++shared_users_;
    return SliceLease{0, shared_place_, gpu.sms};
  }
  TESSERA_ASSIGN_OR_RETURN(const SliceId id, table_.Add(owner, groups));
  TESSERA_ASSIGN_OR_RETURN(const SliceInfo info, table_.Get(id));
  return SliceLease{id, info.place, info.sms(gpu)};
}

void GpuSlices::Release(const SliceLease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  if (lease.id == 0) {
    if (shared_users_ > 0 && --shared_users_ == 0 && shared_place_) {
      device_->provider().Destroy(shared_place_);
      shared_place_ = 0;
    }
    return;
  }
  (void)table_.Remove(lease.id);
}

Result<SliceLease> GpuSlices::BeginResize(const SliceLease& lease, int groups) {
  if (lease.id == 0)
    return Status::FailedPrecondition(
        "this instance runs unconfined on the whole GPU (its model sets no slice_sms or "
        "slice_percent), so it has no slice to resize; set one in its config and reload");
  std::lock_guard<std::mutex> lock(mu_);
  TESSERA_RETURN_IF_ERROR(table_.BeginResize(lease.id, groups));
  TESSERA_ASSIGN_OR_RETURN(const SliceInfo info, table_.Get(lease.id));
  return SliceLease{lease.id, info.other_place,
                    static_cast<int>(info.other_groups.size()) * table_.gpu().group_sms};
}

Status GpuSlices::CommitResize(const SliceLease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.CommitResize(lease.id);
}

Status GpuSlices::FinishResize(const SliceLease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.FinishResize(lease.id);
}

Status GpuSlices::AbortResize(const SliceLease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.AbortResize(lease.id);
}

std::vector<SliceInfo> GpuSlices::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.List();
}

int GpuSlices::free_groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.free_groups();
}

}  // namespace tessera::runtime
