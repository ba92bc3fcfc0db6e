// Model profiles: latency by (slice size in SMs) x (batch size), and memory, as data.
//
// A profile is what the planner knows about one model on one GPU kind. It is measured by
// `tessera profile` on the engine at hand or made by the synthetic generator (synthetic.h),
// and stored as JSON (one point per slice x batch):
//
//   {"model": "resnet50", "gpu": "H100-SXM", "gpu_sms": 132,
//    "memory_bytes": 104857600, "mem_intensity": 0.3,
//    "points": [{"sms": 8, "batch": 1, "mean_ms": 4.1, "std_ms": 0.1, "p99_ms": 4.4}, ...]}
//
// `mem_intensity` (0..1) is the share of the GPU's memory bandwidth the model draws per unit of
// SM share while it runs; the interference model multiplies it by slice share and duty.
// Profiles are plain values: copy freely, no thread rules beyond those of std::vector.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/json_fields.h"
#include "tessera/core/status.h"

namespace tessera::planner {

struct LatencyPoint {
  int sms = 0;
  int batch = 0;
  double mean_ms = 0;
  double std_ms = 0;
  double p99_ms = 0;
};

class Profile {
 public:
  std::string model;
  std::string gpu;           // GPU kind the profile was taken on, e.g. "H100-SXM"
  int gpu_sms = 0;           // SMs of that GPU kind
  int64_t memory_bytes = 0;  // weights + activation arena at the largest batch
  double mem_intensity = 0;  // 0..1, see the file comment

  // Builds a profile from points; fails unless the points form a full grid (every sms x batch
  // pair once), with sms and batch >= 1, mean > 0, std >= 0, p99 >= mean. `where` prefixes
  // errors (a file name).
  static Result<Profile> FromPoints(std::string model, std::string gpu, int gpu_sms,
                                    int64_t memory_bytes, double mem_intensity,
                                    std::vector<LatencyPoint> points, const std::string& where);

  const std::vector<int>& slice_sizes() const { return sms_; }  // ascending
  const std::vector<int>& batches() const { return batches_; }  // ascending
  int max_batch() const { return batches_.back(); }

  // Latency of `batch` (1..max_batch()) on `sms` SMs (any count > 0). Between profiled batches
  // the time is linear in the batch; between profiled slice sizes it is linear in 1/sms (time ~
  // a + c/sms); below the smallest profiled slice it scales by work conservation
  // (t * s_min / sms); above the largest it stays flat. Below the smallest profiled batch it is
  // the smallest batch's time.
  double MeanMs(int batch, double sms) const;
  double P99Ms(int batch, double sms) const;
  double StdMs(int batch, double sms) const;

  const std::vector<LatencyPoint>& points() const { return points_; }

 private:
  double At(size_t si, int batch, double LatencyPoint::*field) const;
  double Interp(int batch, double sms, double LatencyPoint::*field) const;
  std::vector<int> sms_;
  std::vector<int> batches_;
  std::vector<LatencyPoint> points_;  // row-major [slice index][batch index]
};

// JSON (see the file comment). Parse errors name the field: "p.json.points[3].mean_ms: ...".
Result<Profile> ParseProfile(const std::string& json_text, const std::string& what);
Result<Profile> LoadProfile(const std::string& path);
Result<Profile> ProfileFromJson(const nlohmann::json& doc, const std::string& where);
nlohmann::json ProfileToJson(const Profile& p);

}  // namespace tessera::planner
