#include "tessera/planner/profile.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace tessera::planner {

using json_fields::Bad;
using json_fields::CheckKeys;
using json_fields::GetInt;
using json_fields::GetNumber;
using json_fields::GetString;
using json_fields::json;
using json_fields::Require;

Result<Profile> Profile::FromPoints(std::string model, std::string gpu, int gpu_sms,
                                    int64_t memory_bytes, double mem_intensity,
                                    std::vector<LatencyPoint> points, const std::string& where) {
  if (points.empty()) return Status::InvalidArgument(where + ".points: must not be empty");
  if (gpu_sms < 1) return Status::InvalidArgument(where + ".gpu_sms: must be >= 1");
  if (!(mem_intensity >= 0 && mem_intensity <= 1))
    return Status::InvalidArgument(where + ".mem_intensity: must be in [0, 1], got " +
                                   std::to_string(mem_intensity));
  std::map<std::pair<int, int>, LatencyPoint> grid;
  std::vector<int> sms, batches;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    const std::string at = where + ".points[" + std::to_string(i) + "]";
    if (p.sms < 1 || p.sms > gpu_sms)
      return Status::InvalidArgument(at + ".sms: must be in [1, gpu_sms=" +
                                     std::to_string(gpu_sms) + "], got " + std::to_string(p.sms));
    if (p.batch < 1)
      return Status::InvalidArgument(at + ".batch: must be >= 1, got " + std::to_string(p.batch));
    if (!(p.mean_ms > 0) || !(p.std_ms >= 0) || !(p.p99_ms >= p.mean_ms))
      return Status::InvalidArgument(
          at + ": expected mean_ms > 0, std_ms >= 0 and p99_ms >= " + "mean_ms");
    if (!grid.emplace(std::make_pair(p.sms, p.batch), p).second)
      return Status::InvalidArgument(at + ": (sms " + std::to_string(p.sms) + ", batch " +
                                     std::to_string(p.batch) + ") is listed twice");
    sms.push_back(p.sms);
    batches.push_back(p.batch);
  }
  for (auto* v : {&sms, &batches}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  Profile out;
  out.model = std::move(model);
  out.gpu = std::move(gpu);
  out.gpu_sms = gpu_sms;
  out.memory_bytes = memory_bytes;
  out.mem_intensity = mem_intensity;
  for (int s : sms)
    for (int b : batches) {
      auto it = grid.find({s, b});
      if (it == grid.end())
        return Status::InvalidArgument(where + ".points: no point for (sms " + std::to_string(s) +
                                       ", batch " + std::to_string(b) +
                                       "); a profile is a full grid of slice sizes x batches");
      out.points_.push_back(it->second);
    }
  out.sms_ = std::move(sms);
  out.batches_ = std::move(batches);
  return out;
}

// Linear in the batch between profiled batches, flat below the smallest.
double Profile::At(size_t si, int batch, double LatencyPoint::*field) const {
  const LatencyPoint* row = &points_[si * batches_.size()];
  auto hi = std::lower_bound(batches_.begin(), batches_.end(), batch);
  if (hi == batches_.begin()) return row[0].*field;
  if (hi == batches_.end()) hi = batches_.end() - 1;
  const size_t j = hi - batches_.begin();
  const double b0 = batches_[j - 1], b1 = batches_[j];
  const double w = (batch - b0) / (b1 - b0);
  return row[j - 1].*field * (1 - w) + row[j].*field * w;
}

double Profile::Interp(int batch, double sms, double LatencyPoint::*field) const {
  if (sms <= sms_.front()) return At(0, batch, field) * sms_.front() / sms;
  if (sms >= sms_.back()) return At(sms_.size() - 1, batch, field);
  const size_t j = std::upper_bound(sms_.begin(), sms_.end(), sms) - sms_.begin();
  const double inv = 1.0 / sms, inv0 = 1.0 / sms_[j - 1], inv1 = 1.0 / sms_[j];
  const double w = (inv0 - inv) / (inv0 - inv1);
  return At(j - 1, batch, field) * (1 - w) + At(j, batch, field) * w;
}

double Profile::MeanMs(int batch, double sms) const {
  return Interp(batch, sms, &LatencyPoint::mean_ms);
}
double Profile::P99Ms(int batch, double sms) const {
  return Interp(batch, sms, &LatencyPoint::p99_ms);
}
double Profile::StdMs(int batch, double sms) const {
  return Interp(batch, sms, &LatencyPoint::std_ms);
}

Result<Profile> ProfileFromJson(const json& doc, const std::string& where) {
  if (!doc.is_object()) return Bad(where, "a profile object", doc);
  TESSERA_RETURN_IF_ERROR(CheckKeys(
      doc, where, {"model", "gpu", "gpu_sms", "memory_bytes", "mem_intensity", "points"}));
  for (const char* k : {"model", "gpu_sms", "points"})
    TESSERA_RETURN_IF_ERROR(Require(doc, k, where));
  std::string model, gpu = "unknown";
  int64_t gpu_sms = 0, memory = 0;
  double intensity = 0;
  TESSERA_RETURN_IF_ERROR(GetString(doc, "model", where, &model));
  TESSERA_RETURN_IF_ERROR(GetString(doc, "gpu", where, &gpu));
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "gpu_sms", where, &gpu_sms, 1));
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "memory_bytes", where, &memory, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "mem_intensity", where, &intensity, 0, true));
  const json& pts = doc["points"];
  if (!pts.is_array()) return Bad(where + ".points", "an array of points", pts);
  std::vector<LatencyPoint> points;
  for (size_t i = 0; i < pts.size(); ++i) {
    const std::string at = where + ".points[" + std::to_string(i) + "]";
    const json& p = pts[i];
    if (!p.is_object()) return Bad(at, "an object", p);
    TESSERA_RETURN_IF_ERROR(CheckKeys(p, at, {"sms", "batch", "mean_ms", "std_ms", "p99_ms"}));
    for (const char* k : {"sms", "batch", "mean_ms"}) TESSERA_RETURN_IF_ERROR(Require(p, k, at));
    LatencyPoint lp;
    int64_t sms = 0, batch = 0;
    TESSERA_RETURN_IF_ERROR(GetInt(p, "sms", at, &sms, 1));
    TESSERA_RETURN_IF_ERROR(GetInt(p, "batch", at, &batch, 1));
    TESSERA_RETURN_IF_ERROR(GetNumber(p, "mean_ms", at, &lp.mean_ms, 0));
    TESSERA_RETURN_IF_ERROR(GetNumber(p, "std_ms", at, &lp.std_ms, 0, true));
    lp.p99_ms = lp.mean_ms + 2.326 * lp.std_ms;  // normal approximation when p99 is not given
    TESSERA_RETURN_IF_ERROR(GetNumber(p, "p99_ms", at, &lp.p99_ms, 0));
    lp.sms = static_cast<int>(std::min<int64_t>(sms, 1 << 20));
    lp.batch = static_cast<int>(std::min<int64_t>(batch, 1 << 20));
    points.push_back(lp);
  }
  return Profile::FromPoints(model, gpu, static_cast<int>(std::min<int64_t>(gpu_sms, 1 << 20)),
                             memory, intensity, std::move(points), where);
}

Result<Profile> ParseProfile(const std::string& json_text, const std::string& what) {
  TESSERA_ASSIGN_OR_RETURN(json doc, json_fields::ParseDocument(json_text, what));
  return ProfileFromJson(doc, what);
}

Result<Profile> LoadProfile(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(json doc, json_fields::ReadDocument(path));
  return ProfileFromJson(doc, path);
}

json ProfileToJson(const Profile& p) {
  json pts = json::array();
  for (const auto& lp : p.points())
    pts.push_back({{"sms", lp.sms},
                   {"batch", lp.batch},
                   {"mean_ms", lp.mean_ms},
                   {"std_ms", lp.std_ms},
                   {"p99_ms", lp.p99_ms}});
  return {{"model", p.model},
          {"gpu", p.gpu},
          {"gpu_sms", p.gpu_sms},
          {"memory_bytes", p.memory_bytes},
          {"mem_intensity", p.mem_intensity},
          {"points", pts}};
}

}  // namespace tessera::planner
