#include "tessera/runtime/slices.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace tessera::runtime {
namespace {

std::string Gib(int64_t bytes) {
  if (bytes < (int64_t{1} << 30)) return fmt::format("{:.1f} MiB", bytes / 1048576.0);
  return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
}

}  // namespace

std::string GpuLayout::Describe() const {
  const int spare = sms - groups() * group_sms;
  return fmt::format("GPU {} ({}{} SMs: {} groups of {}{})", index, name.empty() ? "" : name + ", ",
                     sms, groups(), group_sms, spare > 0 ? fmt::format(", {} spare", spare) : "");
}

Result<int> GroupsFor(const ModelConfig::Slice& request, const GpuLayout& gpu,
                      const std::string& model) {
  const int n = gpu.groups();
  if (n < 1)
    return Status::InvalidArgument(
        fmt::format("model '{}': {} has no SM group to slice", model, gpu.Describe()));
  if (request.sms > 0) {
    if (request.sms % gpu.group_sms != 0)
      return Status::InvalidArgument(fmt::format(
          "model '{}': slice_sms {} is not a whole number of SM groups on {}; expected a "
          "multiple of {} from {} to {}",
          model, request.sms, gpu.Describe(), gpu.group_sms, gpu.group_sms, n * gpu.group_sms));
    if (request.sms / gpu.group_sms > n)
      return Status::InvalidArgument(
          fmt::format("model '{}': slice_sms {} is more than {} can give; expected at most {}",
                      model, request.sms, gpu.Describe(), n * gpu.group_sms));
    return request.sms / gpu.group_sms;
  }
  if (request.percent > 0 && request.percent <= 100) {
    // Rounded up to whole groups (a 1e-9 slack keeps exact multiples exact); 100% is the GPU.
    const double want = request.percent / 100 * gpu.sms / gpu.group_sms;
    return std::clamp(static_cast<int>(std::ceil(want - 1e-9)), 1, n);
  }
  return Status::InvalidArgument(
      fmt::format("model '{}': expected slice_sms > 0 or slice_percent in (0, 100]", model));
}

SliceTable::SliceTable(GpuLayout gpu, SliceProvider* provider)
    : gpu_(std::move(gpu)), provider_(provider), holder_(gpu_.groups(), 0) {}

SliceTable::~SliceTable() {
  for (auto& [id, s] : slices_) DestroyPlaces(s);
}

void SliceTable::DestroyPlaces(const SliceInfo& s) {
  provider_->Destroy(s.place);
  if (s.state != SliceInfo::State::kServing) provider_->Destroy(s.other_place);
}

void SliceTable::DropOther(SliceInfo* s) {
  provider_->Destroy(s->other_place);
  for (int g : s->other_groups)
    if (std::find(s->groups.begin(), s->groups.end(), g) == s->groups.end()) holder_[g] = 0;
  s->other_groups.clear();
  s->other_place = 0;
  s->state = SliceInfo::State::kServing;
}

int SliceTable::free_groups() const {
  return static_cast<int>(std::count(holder_.begin(), holder_.end(), 0));
}

std::string SliceTable::Holders() const {
  std::string out;
  for (const auto& [id, s] : slices_) {
    const auto held = std::count(holder_.begin(), holder_.end(), id);
    out += fmt::format("{}{} ({} SMs)", out.empty() ? "" : ", ", s.owner, held * gpu_.group_sms);
  }
  return out.empty() ? "nobody" : out;
}

Result<SliceInfo*> SliceTable::Find(SliceId id, const char* what) {
  auto it = slices_.find(id);
  if (it == slices_.end())
    return Status::NotFound(fmt::format("{}: no slice {} on {}", what, id, gpu_.Describe()));
  return &it->second;
}

Result<SliceId> SliceTable::Add(const std::string& owner, int groups) {
  if (groups < 1 || groups > gpu_.groups())
    return Status::InvalidArgument(fmt::format("slice for '{}': {} groups; expected 1 to {} on {}",
                                               owner, groups, gpu_.groups(), gpu_.Describe()));
  std::vector<int> take;
  for (int g = 0; g < gpu_.groups() && static_cast<int>(take.size()) < groups; ++g)
    if (holder_[g] == 0) take.push_back(g);
  if (static_cast<int>(take.size()) < groups)
    return Status::ResourceExhausted(
        fmt::format("a slice of {} SMs for '{}' does not fit on {}: {} SMs are free; held by {}",
                    groups * gpu_.group_sms, owner, gpu_.Describe(), free_groups() * gpu_.group_sms,
                    Holders()));
  TESSERA_ASSIGN_OR_RETURN(const uint64_t place, provider_->Create(take));
  const SliceId id = next_id_++;
  for (int g : take) holder_[g] = id;
  SliceInfo s;
  s.id = id;
  s.owner = owner;
  s.groups = std::move(take);
  s.place = place;
  slices_.emplace(id, std::move(s));
  return id;
}

Status SliceTable::Remove(SliceId id) {
  TESSERA_ASSIGN_OR_RETURN(SliceInfo * s, Find(id, "remove"));
  DestroyPlaces(*s);
  for (auto& h : holder_)
    if (h == id) h = 0;
  slices_.erase(id);
  return Status::OK();
}

Status SliceTable::BeginResize(SliceId id, int groups) {
  TESSERA_ASSIGN_OR_RETURN(SliceInfo * s, Find(id, "resize"));
  if (s->state != SliceInfo::State::kServing)
    return Status::FailedPrecondition(
        fmt::format("resize of '{}': a resize is already in progress ({}); one at a time", s->owner,
                    s->state == SliceInfo::State::kResizing ? "the new slice is not live yet"
                                                            : "the old slice is still draining"));
  const int have = static_cast<int>(s->groups.size());
  if (groups < 1 || groups > gpu_.groups())
    return Status::InvalidArgument(fmt::format("resize of '{}': {} SMs; expected {} to {} on {}",
                                               s->owner, groups * gpu_.group_sms, gpu_.group_sms,
                                               gpu_.groups() * gpu_.group_sms, gpu_.Describe()));
  if (groups == have)
    return Status::InvalidArgument(
        fmt::format("resize of '{}': it already has {} SMs", s->owner, have * gpu_.group_sms));
  std::vector<int> next(s->groups.begin(), s->groups.begin() + std::min(groups, have));
  std::vector<int> extra;
  for (int g = 0; g < gpu_.groups() && have + static_cast<int>(extra.size()) < groups; ++g)
    if (holder_[g] == 0) extra.push_back(g);
  if (have + static_cast<int>(extra.size()) < groups)
    return Status::ResourceExhausted(fmt::format(
        "resize of '{}' to {} SMs does not fit on {}: it has {} SMs and {} more are free; "
        "held by {}",
        s->owner, groups * gpu_.group_sms, gpu_.Describe(), have * gpu_.group_sms,
        free_groups() * gpu_.group_sms, Holders()));
  next.insert(next.end(), extra.begin(), extra.end());
  std::sort(next.begin(), next.end());
  // Make before break: the new place is made while the old one serves (a grown slice shares
  // the old groups with it until the flip).
  TESSERA_ASSIGN_OR_RETURN(const uint64_t place, provider_->Create(next));
  for (int g : extra) holder_[g] = id;
  s->state = SliceInfo::State::kResizing;
  s->other_groups = std::move(next);
  s->other_place = place;
  return Status::OK();
}

Status SliceTable::CommitResize(SliceId id) {
  TESSERA_ASSIGN_OR_RETURN(SliceInfo * s, Find(id, "commit resize"));
  if (s->state != SliceInfo::State::kResizing)
    return Status::FailedPrecondition(
        fmt::format("commit resize of '{}': no new slice is waiting to go live", s->owner));
  std::swap(s->groups, s->other_groups);
  std::swap(s->place, s->other_place);
  s->state = SliceInfo::State::kDraining;
  return Status::OK();
}

Status SliceTable::FinishResize(SliceId id) {
  TESSERA_ASSIGN_OR_RETURN(SliceInfo * s, Find(id, "finish resize"));
  if (s->state != SliceInfo::State::kDraining)
    return Status::FailedPrecondition(
        fmt::format("finish resize of '{}': no old slice is draining", s->owner));
  DropOther(s);  // the old place, now other, has drained
  return Status::OK();
}

Status SliceTable::AbortResize(SliceId id) {
  TESSERA_ASSIGN_OR_RETURN(SliceInfo * s, Find(id, "abort resize"));
  if (s->state != SliceInfo::State::kResizing)
    return Status::FailedPrecondition(fmt::format(
        "abort resize of '{}': nothing to abort (only a resize that has not gone live can be)",
        s->owner));
  DropOther(s);  // the new place that never went live
  return Status::OK();
}

Result<SliceInfo> SliceTable::Get(SliceId id) const {
  auto it = slices_.find(id);
  if (it == slices_.end())
    return Status::NotFound(fmt::format("no slice {} on {}", id, gpu_.Describe()));
  return it->second;
}

std::vector<SliceInfo> SliceTable::List() const {
  std::vector<SliceInfo> out;
  for (const auto& [id, s] : slices_) out.push_back(s);
  return out;
}

Status MemoryBudget::Reserve(const std::string& owner, int64_t bytes, const std::string& doing) {
  if (bytes < 0)
    return Status::InvalidArgument(
        fmt::format("memory for '{}': {} bytes; expected >= 0", owner, bytes));
  if (held_.count(owner))
    return Status::AlreadyExists(
        fmt::format("'{}' already holds {} on {}", owner, Gib(held_[owner]), device_));
  if (bytes > free()) {
    std::string holders;
    for (const auto& [o, b] : held_)
      holders += fmt::format("{}{} {}", holders.empty() ? "" : ", ", o, Gib(b));
    return Status::ResourceExhausted(fmt::format(
        "{} '{}' needs {} of memory on {}, but {} of the {} budget is free (held by {}); "
        "nothing was changed",
        doing, owner, Gib(bytes), device_, Gib(free()), Gib(bytes_),
        holders.empty() ? "nobody" : holders));
  }
  held_[owner] = bytes;
  used_ += bytes;
  return Status::OK();
}

void MemoryBudget::Release(const std::string& owner) {
  auto it = held_.find(owner);
  if (it == held_.end()) return;
  used_ -= it->second;
  held_.erase(it);
}

void MemoryBudget::ReleasePrefix(const std::string& prefix) {
  for (auto it = held_.lower_bound(prefix);
       it != held_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    used_ -= it->second;
    it = held_.erase(it);
  }
}

}  // namespace tessera::runtime
