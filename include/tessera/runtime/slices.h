// GPU slices as bookkeeping: which SM groups of a GPU each model instance holds, how a slice is
// resized live make-before-break, and how much of a GPU's memory the loaded models may take.
//
// A GPU is split once into groups of `group_sms` SMs (green contexts on Hopper: 8-SM groups,
// 132 SMs -> 16 groups and 4 spare SMs). A slice is a set of whole groups; what no slice holds
// stays free. The execution place on a slice (a green context with its streams, an MPS context,
// a plain stream) comes from a SliceProvider; the CUDA providers come with the CUDA engine, and
// everything here is exercised without a GPU through a fake provider (tests/unit/slices_test.cc).
//
// Live resize, make-before-break:
//   BeginResize   reserves the new group set (grow: the old groups plus free ones; shrink: a
//                 prefix of the old) and creates the new place; the old one keeps serving.
//   (the caller makes the model ready on the new place: graphs captured, warm-up)
//   CommitResize  flips: new batches go to the new place; the old one drains.
//   FinishResize  the old place has drained: it is destroyed, groups only it held are freed.
//   AbortResize   before the flip: the new place is destroyed and its reservation undone.
// Not thread-safe; the owner serializes calls.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/core/status.h"
#include "tessera/model/config.h"

namespace tessera::runtime {

// One GPU as the slices see it.
struct GpuLayout {
  int index = 0;
  std::string name;          // "NVIDIA H100 80GB HBM3", for messages
  int sms = 0;               // all SMs
  int group_sms = 8;         // slice granularity
  int64_t memory_bytes = 0;  // the budget models may take (weights + arenas)
  // The groups the GPU's split really gave (the driver may give fewer than sms / group_sms, to
  // respect its clusters); 0: sms / group_sms.
  int split_groups = 0;
  int groups() const {
    if (split_groups > 0) return split_groups;
    return group_sms > 0 ? sms / group_sms : 0;
  }
  std::string Describe() const;  // "GPU 0 (H100, 132 SMs: 16 groups of 8, 4 spare)"
};

// The number of groups a model's slice request takes on `gpu`. InvalidArgument, naming the
// model and what the GPU allows, when SMs are not a whole number of groups or the request is
// larger than the GPU; a percentage rounds up to whole groups (at least one).
Result<int> GroupsFor(const ModelConfig::Slice& request, const GpuLayout& gpu,
                      const std::string& model);

// Makes and destroys execution places on sets of SM groups of one GPU.
class SliceProvider {
 public:
  virtual ~SliceProvider() = default;
  // "green", "mps", "streams", "exclusive" (or a test's fake).
  virtual std::string kind() const = 0;
  // A place bound to exactly these groups (indices into the GPU's groups, ascending).
  virtual Result<uint64_t> Create(const std::vector<int>& groups) = 0;
  virtual void Destroy(uint64_t place) = 0;
};

using SliceId = int64_t;

struct SliceInfo {
  SliceId id = 0;
  std::string owner;        // model (and instance) it serves
  std::vector<int> groups;  // what the serving place runs on
  uint64_t place = 0;       // the serving place
  enum class State { kServing, kResizing, kDraining } state = State::kServing;
  // kResizing: the new place, ready to flip to; kDraining: the old place, still finishing.
  std::vector<int> other_groups;
  uint64_t other_place = 0;
  int sms(const GpuLayout& gpu) const { return static_cast<int>(groups.size()) * gpu.group_sms; }
};

class SliceTable {
 public:
  SliceTable(GpuLayout gpu, SliceProvider* provider);
  ~SliceTable();  // destroys every place still held
  SliceTable(const SliceTable&) = delete;
  SliceTable& operator=(const SliceTable&) = delete;

  const GpuLayout& gpu() const { return gpu_; }
  int free_groups() const;
  // A new slice of `groups` groups (the lowest free ones) for `owner`. ResourceExhausted says
  // how many groups are free and who holds the rest; a provider failure is passed on and
  // nothing is held.
  Result<SliceId> Add(const std::string& owner, int groups);
  // Destroys the slice's places and frees its groups (any state).
  Status Remove(SliceId id);
  Status BeginResize(SliceId id, int groups);
  Status CommitResize(SliceId id);
  Status FinishResize(SliceId id);
  Status AbortResize(SliceId id);
  Result<SliceInfo> Get(SliceId id) const;
  std::vector<SliceInfo> List() const;

 private:
  Result<SliceInfo*> Find(SliceId id, const char* what);
  void DestroyPlaces(const SliceInfo& s);
  // Destroys the slice's other place (new before a flip, old after one), frees the groups only
  // it held and leaves the slice serving.
  void DropOther(SliceInfo* s);
  std::string Holders() const;
  GpuLayout gpu_;
  SliceProvider* provider_;
  std::vector<SliceId> holder_;  // per group: the slice holding (or reserving) it, 0 if free
  std::map<SliceId, SliceInfo> slices_;
  SliceId next_id_ = 1;
};

// A device's memory budget (a GPU's, or the host's for CPU models): a model's load reserves its
// bytes or is refused with what is free and who holds the rest; a refused load changes nothing.
class MemoryBudget {
 public:
  explicit MemoryBudget(const GpuLayout& gpu) : MemoryBudget(gpu.Describe(), gpu.memory_bytes) {}
  // `device` names it in messages ("GPU 0 (...)", "the CPU").
  MemoryBudget(std::string device, int64_t bytes) : device_(std::move(device)), bytes_(bytes) {}
  // `doing` names the action in a refusal ("loading 'm v1' needs ...").
  Status Reserve(const std::string& owner, int64_t bytes, const std::string& doing = "loading");
  void Release(const std::string& owner);
  void ReleasePrefix(const std::string& prefix);  // every owner whose name starts with it
  int64_t used() const { return used_; }
  int64_t free() const { return bytes_ - used_; }
  int64_t capacity() const { return bytes_; }

 private:
  std::string device_;
  int64_t bytes_ = 0;
  std::map<std::string, int64_t> held_;
  int64_t used_ = 0;
};

}  // namespace tessera::runtime
