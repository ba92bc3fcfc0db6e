#include "tessera/planner/plan.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "sizing.h"
#include "tessera/planner/synthetic.h"

namespace tessera::planner {

using json_fields::Bad;
using json_fields::CheckKeys;
using json_fields::GetInt;
using json_fields::GetNumber;
using json_fields::GetString;
using json_fields::json;
using json_fields::Require;

Result<Policy> ParsePolicy(const std::string& name) {
  if (name == "tessera") return Policy::kTessera;
  if (name == "nexus") return Policy::kNexus;
  if (name == "igniter") return Policy::kIgniter;
  if (name == "gslice") return Policy::kGslice;
  return Status::InvalidArgument("unknown policy '" + name +
                                 "' (expected tessera, nexus, igniter or gslice)");
}

Result<std::vector<Policy>> ParsePolicies(const std::string& name) {
  if (name == "all")
    return std::vector<Policy>{Policy::kTessera, Policy::kNexus, Policy::kIgniter, Policy::kGslice};
  auto p = ParsePolicy(name);
  if (!p.ok())
    return Status::InvalidArgument("unknown policy '" + name +
                                   "' (expected tessera, nexus, igniter, gslice or all)");
  return std::vector<Policy>{*p};
}

const char* PolicyName(Policy p) {
  switch (p) {
    case Policy::kTessera:
      return "tessera";
    case Policy::kNexus:
      return "nexus";
    case Policy::kIgniter:
      return "igniter";
    case Policy::kGslice:
      return "gslice";
  }
  return "?";
}

Result<Plan> MakePlan(const PlanInput& in, Policy policy) {
  const GpuSpec& g = in.gpu;
  if (g.count < 1 || g.sms < 1 || g.granularity_sms < 1 || g.granularity_sms > g.sms ||
      g.memory_bytes < 1)
    return Status::InvalidArgument(
        "gpu: expected count >= 1, sms >= 1, 1 <= granularity_sms <= sms and memory > 0");
  if (!(in.options.max_utilization > 0 && in.options.max_utilization <= 1))
    return Status::InvalidArgument("options.max_utilization: expected a number in (0, 1]");
  if (!(in.options.tail_probability > 0 && in.options.tail_probability < 0.5))
    return Status::InvalidArgument("options.tail_probability: expected a number in (0, 0.5)");
  if (!(in.options.check_attainment >= 0 && in.options.check_attainment < 1))
    return Status::InvalidArgument(
        "options.check_attainment: expected a number in [0, 1) (0: no queue checks)");
  if (in.options.check_arrivals < 1000 || in.options.check_budget < 0)
    return Status::InvalidArgument(
        "options: expected check_arrivals >= 1000 and check_budget >= 0");
  std::map<std::string, int> seen;
  for (const auto& m : in.models) {
    if (!(m.rate_rps > 0) || !(m.slo_ms > 0))
      return Status::InvalidArgument("model '" + m.name + "': rate and slo_ms must be > 0");
    if (m.profile.gpu_sms != g.sms)
      return Status::InvalidArgument("model '" + m.name + "': its profile is for a GPU with " +
                                     std::to_string(m.profile.gpu_sms) +
                                     " SMs but the plan's GPU (" + g.kind + ") has " +
                                     std::to_string(g.sms));
    if (seen[m.name]++) return Status::InvalidArgument("model '" + m.name + "' is listed twice");
  }
  switch (policy) {
    case Policy::kTessera:
      return detail::PlanTessera(in);
    case Policy::kNexus:
      return detail::PlanNexus(in);
    case Policy::kIgniter:
      return detail::PlanIgniter(in);
    case Policy::kGslice:
      return detail::PlanGslice(in);
  }
  return Status::InvalidArgument("unknown policy");
}

Status CheckPlan(const PlanInput& in, const Plan& plan) {
  const GpuSpec& g = in.gpu;
  const double cap_sms = UsableSms(g, plan.policy);
  if (plan.gpus_used() > g.count)
    return Status::Internal(
        detail::Fmt("plan uses %d GPUs, only %d given", plan.gpus_used(), g.count));
  std::map<std::string, const ModelDemand*> by_name;
  for (const auto& m : in.models) by_name[m.name] = &m;
  std::map<std::string, double> routed;
  for (const GpuPlan& gp : plan.gpus) {
    double sms = 0;
    int64_t mem = 0;
    for (const Slice& s : gp.slices) {
      sms += s.sms;
      mem += s.memory_bytes;
      if (plan.policy == Policy::kTessera &&
          std::fmod(s.sms, static_cast<double>(g.granularity_sms)) != 0)
        return Status::Internal(detail::Fmt("GPU %d: a %.2f-SM slice is not a multiple of %d",
                                            gp.index, s.sms, g.granularity_sms));
      for (const SliceMember& m : s.members) {
        if (!by_name.count(m.model))
          return Status::Internal("GPU " + std::to_string(gp.index) + ": unknown model " + m.model);
        if (!(m.predicted_ms <= m.slo_ms * (1 + 1e-9)))
          return Status::Internal(detail::Fmt("GPU %d: %s predicted %.3f ms > SLO %.3f ms",
                                              gp.index, m.model.c_str(), m.predicted_ms, m.slo_ms));
        if (m.max_batch < 1)
          return Status::Internal("GPU " + std::to_string(gp.index) + ": " + m.model +
                                  " has no batch");
        routed[m.model] += m.rate_rps;
      }
    }
    if (sms > cap_sms + 1e-6)
      return Status::Internal(detail::Fmt("GPU %d: %.2f SMs of %.0f used", gp.index, sms, cap_sms));
    if (mem > g.memory_bytes)
      return Status::Internal(detail::Fmt("GPU %d: %lld bytes of %lld", gp.index,
                                          static_cast<long long>(mem),
                                          static_cast<long long>(g.memory_bytes)));
  }
  std::map<std::string, bool> unplaced;
  for (const auto& u : plan.unplaced) unplaced[u.model] = true;
  for (const ModelPlan& mp : plan.models) {
    if (unplaced.count(mp.model)) continue;
    const ModelDemand& m = *by_name.at(mp.model);
    if (std::fabs(routed[mp.model] - m.rate_rps) > 1e-6 * m.rate_rps)
      return Status::Internal(detail::Fmt("%s: slices take %.3f req/s of %.3f", m.name.c_str(),
                                          routed[mp.model], m.rate_rps));
    if (mp.planned_rps < m.rate_rps * (1 - 1e-9))
      return Status::Internal(detail::Fmt("%s: planned capacity %.3f req/s < rate %.3f",
                                          m.name.c_str(), mp.planned_rps, m.rate_rps));
  }
  return Status::OK();
}

namespace {

Result<GpuSpec> ParseGpu(const json& j, const std::string& where) {
  if (!j.is_object()) return Bad(where, "an object", j);
  TESSERA_RETURN_IF_ERROR(
      CheckKeys(j, where, {"kind", "count", "sms", "granularity_sms", "memory_gib"}));
  GpuSpec g;
  int64_t count = g.count, sms = g.sms, gran = g.granularity_sms;
  double mem_gib = static_cast<double>(g.memory_bytes) / (1ll << 30);
  TESSERA_RETURN_IF_ERROR(GetString(j, "kind", where, &g.kind));
  TESSERA_RETURN_IF_ERROR(GetInt(j, "count", where, &count, 1));
  TESSERA_RETURN_IF_ERROR(GetInt(j, "sms", where, &sms, 1));
  TESSERA_RETURN_IF_ERROR(GetInt(j, "granularity_sms", where, &gran, 1));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "memory_gib", where, &mem_gib, 0));
  if (count > 1000000 || sms > 100000)
    return Status::InvalidArgument(where + ": count or sms is implausibly large");
  if (gran > sms)
    return Status::InvalidArgument(where + ".granularity_sms: must be <= sms (" +
                                   std::to_string(sms) + ")");
  g.count = static_cast<int>(count);
  g.sms = static_cast<int>(sms);
  g.granularity_sms = static_cast<int>(gran);
  g.memory_bytes = static_cast<int64_t>(mem_gib * (1ll << 30));
  return g;
}

}  // namespace

Result<PlanInput> ParsePlanInput(const json& doc, const std::string& what,
                                 const std::string& base_dir) {
  if (!doc.is_object()) return Bad(what, "a JSON object", doc);
  TESSERA_RETURN_IF_ERROR(CheckKeys(doc, what, {"gpu", "interference", "options", "models"}));
  PlanInput in;
  if (doc.contains("gpu")) {
    TESSERA_ASSIGN_OR_RETURN(in.gpu, ParseGpu(doc["gpu"], what + ".gpu"));
  }
  if (doc.contains("interference")) {
    const json& j = doc["interference"];
    const std::string at = what + ".interference";
    if (!j.is_object()) return Bad(at, "an object", j);
    TESSERA_RETURN_IF_ERROR(CheckKeys(j, at, {"alpha"}));
    double alpha = in.interference.alpha();
    TESSERA_RETURN_IF_ERROR(GetNumber(j, "alpha", at, &alpha, 0, true));
    in.interference = InterferenceModel(alpha);
  }
  if (doc.contains("options")) {
    const json& j = doc["options"];
    const std::string at = what + ".options";
    if (!j.is_object()) return Bad(at, "an object", j);
    TESSERA_RETURN_IF_ERROR(
        CheckKeys(j, at,
                  {"max_utilization", "share_below_utilization", "tail_probability",
                   "check_attainment", "check_arrivals", "check_budget", "batch_buckets"}));
    TESSERA_RETURN_IF_ERROR(GetNumber(j, "max_utilization", at, &in.options.max_utilization, 0));
    if (in.options.max_utilization > 1)
      return Bad(at + ".max_utilization", "a number in (0, 1]", j["max_utilization"]);
    TESSERA_RETURN_IF_ERROR(
        GetNumber(j, "share_below_utilization", at, &in.options.share_below_utilization, 0, true));
    TESSERA_RETURN_IF_ERROR(GetNumber(j, "tail_probability", at, &in.options.tail_probability, 0));
    TESSERA_RETURN_IF_ERROR(
        GetNumber(j, "check_attainment", at, &in.options.check_attainment, 0, true));
    if (in.options.check_attainment >= 1)
      return Bad(at + ".check_attainment", "a number in [0, 1)", j["check_attainment"]);
    double arrivals = in.options.check_arrivals,
           budget = static_cast<double>(in.options.check_budget);
    TESSERA_RETURN_IF_ERROR(GetNumber(j, "check_arrivals", at, &arrivals, 1000, true));
    TESSERA_RETURN_IF_ERROR(GetNumber(j, "check_budget", at, &budget, 0, true));
    if (arrivals > 1e8 || budget > 1e15)
      return Status::InvalidArgument(
          at + ": check_arrivals (<= 1e8) or check_budget (<= 1e15) too large");
    if (j.contains("batch_buckets")) {
      const json& b = j["batch_buckets"];
      if (b != "every" && b != "pow2")
        return Bad(at + ".batch_buckets", "\"every\" or \"pow2\"", b);
      in.options.pow2_buckets = b == "pow2";
    }
    in.options.check_arrivals = static_cast<int>(arrivals);
    in.options.check_budget = static_cast<int64_t>(budget);
  }
  TESSERA_RETURN_IF_ERROR(Require(doc, "models", what));
  const json& models = doc["models"];
  if (!models.is_array() || models.empty())
    return Bad(what + ".models", "a non-empty array of models", models);
  for (size_t i = 0; i < models.size(); ++i) {
    const std::string at = what + ".models[" + std::to_string(i) + "]";
    const json& m = models[i];
    if (!m.is_object()) return Bad(at, "an object", m);
    TESSERA_RETURN_IF_ERROR(
        CheckKeys(m, at, {"name", "rate", "slo_ms", "profile", "synthetic", "arrival_cv"}));
    for (const char* k : {"name", "rate", "slo_ms"}) TESSERA_RETURN_IF_ERROR(Require(m, k, at));
    ModelDemand d;
    TESSERA_RETURN_IF_ERROR(GetString(m, "name", at, &d.name));
    if (d.name.empty()) return Status::InvalidArgument(at + ".name: must not be empty");
    TESSERA_RETURN_IF_ERROR(GetNumber(m, "rate", at, &d.rate_rps, 0));
    TESSERA_RETURN_IF_ERROR(GetNumber(m, "slo_ms", at, &d.slo_ms, 0));
    TESSERA_RETURN_IF_ERROR(GetNumber(m, "arrival_cv", at, &d.arrival_cv, 0, true));
    if (m.contains("profile") == m.contains("synthetic"))
      return Status::InvalidArgument(at +
                                     ": give exactly one of 'profile' (an object or a "
                                     "file) and 'synthetic' (a family name)");
    if (m.contains("synthetic")) {
      std::string family;
      TESSERA_RETURN_IF_ERROR(GetString(m, "synthetic", at, &family));
      auto sm = SyntheticFamily(family);
      if (!sm.ok()) return Status::InvalidArgument(at + ".synthetic: " + sm.status().message());
      sm->name = d.name;
      d.profile = MakeSyntheticProfile(*sm, in.gpu.kind, in.gpu.sms, in.gpu.granularity_sms);
    } else if (m["profile"].is_string()) {
      std::filesystem::path p(m["profile"].get<std::string>());
      if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
      auto prof = LoadProfile(p.string());
      if (!prof.ok()) return Status::InvalidArgument(at + ".profile: " + prof.status().message());
      d.profile = std::move(*prof);
    } else {
      TESSERA_ASSIGN_OR_RETURN(d.profile, ProfileFromJson(m["profile"], at + ".profile"));
    }
    in.models.push_back(std::move(d));
  }
  return in;
}

Result<PlanInput> LoadPlanInput(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(json doc, json_fields::ReadDocument(path));
  return ParsePlanInput(doc, path, std::filesystem::path(path).parent_path().string());
}

json PlanToJson(const Plan& plan) {
  json gpus = json::array();
  for (const GpuPlan& gp : plan.gpus) {
    json slices = json::array();
    for (const Slice& s : gp.slices) {
      json members = json::array();
      for (const SliceMember& m : s.members)
        members.push_back({{"model", m.model},
                           {"rate_rps", m.rate_rps},
                           {"slo_ms", m.slo_ms},
                           {"max_batch", m.max_batch},
                           {"predicted_ms", m.predicted_ms}});
      slices.push_back({{"sms", s.sms},
                        {"duty_cycle_ms", s.duty_cycle_ms},
                        {"busy", s.busy},
                        {"pressure", s.pressure},
                        {"inflation", s.inflation},
                        {"memory_bytes", s.memory_bytes},
                        {"members", members},
                        {"why", s.why}});
    }
    gpus.push_back({{"index", gp.index},
                    {"sms_used", gp.sms_used},
                    {"memory_bytes", gp.memory_bytes},
                    {"slices", slices}});
  }
  json unplaced = json::array();
  for (const Unplaced& u : plan.unplaced)
    unplaced.push_back({{"model", u.model}, {"reason", u.reason}});
  json models = json::array();
  for (const ModelPlan& m : plan.models)
    models.push_back(
        {{"model", m.model}, {"slices", m.slices}, {"planned_rps", m.planned_rps}, {"why", m.why}});
  return {{"policy", PolicyName(plan.policy)},
          {"gpu",
           {{"kind", plan.gpu.kind},
            {"count", plan.gpu.count},
            {"sms", plan.gpu.sms},
            {"granularity_sms", plan.gpu.granularity_sms},
            {"memory_bytes", plan.gpu.memory_bytes}}},
          {"gpus_used", plan.gpus_used()},
          {"gpus", gpus},
          {"models", models},
          {"unplaced", unplaced}};
}

}  // namespace tessera::planner
