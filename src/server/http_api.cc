#include "server/http_api.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <optional>

#include "server/http_infer.h"
#include "tessera/core/clock.h"

namespace tessera::server {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
constexpr const char* kServerName = "tessera";
constexpr const char* kServerVersion = "0.1.0";

HttpResponse Json(std::string body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

HttpResponse Empty(int status = 200) {
  HttpResponse r;
  r.status = status;
  return r;
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

Result<int64_t> ParseVersion(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1)
    return Status::InvalidArgument("model version '" + s + "' is not a positive integer");
  return v;
}

// Parses an optional JSON object body; an empty body is an empty object.
Result<rapidjson::Document> ParseBody(const HttpRequest& req) {
  rapidjson::Document d;
  if (!req.body || req.body->empty()) {
    d.SetObject();
    return d;
  }
  d.Parse(req.body->data(), req.body->size());
  if (d.HasParseError())
    return Status::InvalidArgument("request JSON is malformed at byte " +
                                   std::to_string(d.GetErrorOffset()) + ": " +
                                   rapidjson::GetParseError_En(d.GetParseError()));
  if (!d.IsObject()) return Status::InvalidArgument("the request body must be a JSON object");
  return d;
}

void TensorMeta(Writer& w, const TensorConfig& t, bool batched) {
  w.StartObject();
  w.Key("name");
  w.String(t.name.c_str());
  w.Key("datatype");
  w.String(DataTypeName(t.dtype));
  w.Key("shape");
  w.StartArray();
  if (batched) w.Int64(-1);
  for (int64_t d : t.dims) w.Int64(d);
  w.EndArray();
  w.EndObject();
}

std::string ModelMetadataJson(const ModelHandle& m, const std::vector<int64_t>& versions) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  const ModelConfig& c = m.config();
  w.StartObject();
  w.Key("name");
  w.String(c.name.c_str());
  w.Key("versions");
  w.StartArray();
  for (int64_t v : versions) w.String(std::to_string(v).c_str());
  w.EndArray();
  w.Key("platform");
  w.String(c.platform.empty() ? "onnxruntime_onnx" : c.platform.c_str());
  const bool batched = c.max_batch_size > 0;
  w.Key("inputs");
  w.StartArray();
  for (const auto& t : c.inputs) TensorMeta(w, t, batched);
  w.EndArray();
  w.Key("outputs");
  w.StartArray();
  for (const auto& t : c.outputs) TensorMeta(w, t, batched);
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

void Duration(Writer& w, const char* key, const DurationStat& d) {
  w.Key(key);
  w.StartObject();
  w.Key("count");
  w.Uint64(d.count);
  w.Key("ns");
  w.Uint64(d.ns);
  w.EndObject();
}

std::string ShmStatusJson(const std::vector<ShmRegionInfo>& regions, bool cuda) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartArray();
  for (const auto& r : regions) {
    w.StartObject();
    w.Key("name");
    w.String(r.name.c_str());
    if (cuda) {
      w.Key("device_id");
      w.Int64(r.device_id);
    } else {
      w.Key("key");
      w.String(r.key.c_str());
      w.Key("offset");
      w.Uint64(r.offset);
    }
    w.Key("byte_size");
    w.Uint64(r.byte_size);
    w.EndObject();
  }
  w.EndArray();
  return std::string(sb.GetString(), sb.GetSize());
}

std::string LogJson(const ServerContext::LogSettings& s) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("log_file");
  w.String("");
  w.Key("log_info");
  w.Bool(s.info);
  w.Key("log_warning");
  w.Bool(s.warning);
  w.Key("log_error");
  w.Bool(s.error);
  w.Key("log_verbose_level");
  w.Uint(s.verbose_level);
  w.Key("log_format");
  w.String(s.format.c_str());
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

// Base64 (for CUDA IPC handles in JSON: {"raw_handle": {"b64": "..."}}).
Result<std::string> Base64Decode(const std::string& in) {
  static const std::string kChars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char ch : in) {
    if (ch == '=') break;
    const size_t v = kChars.find(ch);
    if (v == std::string::npos) return Status::InvalidArgument("raw_handle.b64 is not base64");
    buf = (buf << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

// GET /v2/models/M/slice, and the admin calls' replies.
std::string SliceJson(const SliceState& st) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("name");
  w.String(st.model.c_str());
  w.Key("engine");
  w.String(st.engine.c_str());
  w.Key("threads");
  w.Int(st.threads);
  w.Key("instances");
  w.Int(st.instances);
  w.Key("max_batch");
  w.Int(st.max_batch);
  w.Key("config_max_batch");
  w.Int(st.config_max_batch);
  w.Key("versions");
  w.StartArray();
  for (int64_t v : st.versions) w.String(std::to_string(v).c_str());
  w.EndArray();
  if (st.gpu >= 0) {
    w.Key("gpu");
    w.Int(st.gpu);
    w.Key("sms");
    w.Int(st.sms);
    w.Key("gpu_sms");
    w.Int(st.gpu_sms);
    w.Key("confined");
    w.Bool(st.confined);
    w.Key("sharing");
    w.String(st.sharing.c_str());
    w.Key("resize_ms");
    w.Double(st.resize_ms);
    w.Key("resize_gap_us");
    w.Double(st.resize_gap_us);
  }
  w.Key("instance_slices");
  w.StartArray();
  for (const InstanceSlice& i : st.instance_slices) {
    w.StartObject();
    w.Key("index");
    w.Int(i.index);
    if (i.gpu >= 0) {
      w.Key("gpu");
      w.Int(i.gpu);
      w.Key("sms");
      w.Int(i.sms);
      w.Key("confined");
      w.Bool(i.confined);
    } else {
      w.Key("threads");
      w.Int(i.threads);
    }
    w.Key("max_batch");
    w.Int(i.max_batch);
    w.Key("batches");
    w.Uint64(i.batches);
    w.Key("rows");
    w.Uint64(i.rows);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

}  // namespace

std::string StatsJson(const std::vector<ModelStatsSnapshot>& snaps) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("model_stats");
  w.StartArray();
  for (const auto& s : snaps) {
    w.StartObject();
    w.Key("name");
    w.String(s.name.c_str());
    w.Key("version");
    w.String(std::to_string(s.version).c_str());
    w.Key("last_inference");
    w.Uint64(s.last_inference_ms);
    w.Key("inference_count");
    w.Uint64(s.inference_count);
    w.Key("execution_count");
    w.Uint64(s.execution_count);
    w.Key("inference_stats");
    w.StartObject();
    Duration(w, "success", s.success);
    Duration(w, "fail", s.fail);
    Duration(w, "queue", s.queue);
    Duration(w, "compute_input", s.compute_input);
    Duration(w, "compute_infer", s.compute_infer);
    Duration(w, "compute_output", s.compute_output);
    Duration(w, "cache_hit", {});
    Duration(w, "cache_miss", {});
    w.EndObject();
    w.Key("batch_stats");
    w.StartArray();
    for (const auto& b : s.batch_stats) {
      w.StartObject();
      w.Key("batch_size");
      w.Uint64(b.batch_size);
      Duration(w, "compute_input", b.compute_input);
      Duration(w, "compute_infer", b.compute_infer);
      Duration(w, "compute_output", b.compute_output);
      w.Key("tessera_compute_ms_sq");
      w.Double(b.compute_ms_sq);
      w.EndObject();
    }
    w.EndArray();
    w.Key("memory_usage");
    w.StartArray();
    w.StartObject();
    w.Key("type");
    w.String("CPU");
    w.Key("id");
    w.Int64(0);
    w.Key("byte_size");
    w.Uint64(s.memory_bytes);
    w.EndObject();
    w.EndArray();
    w.Key("tessera");
    w.StartObject();
    w.Key("slo_met");
    w.Uint64(s.slo_met);
    w.Key("slo_missed");
    w.Uint64(s.slo_missed);
    w.Key("queue_depth");
    w.Int64(s.queue_depth);
    w.Key("rejects");
    w.StartObject();
    for (size_t i = 0; i < s.rejects.size(); ++i) {
      w.Key(RejectReasonName(static_cast<RejectReason>(i)));
      w.Uint64(s.rejects[i]);
    }
    w.EndObject();
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

void HttpApi::Infer(HttpRequest&& req, std::shared_ptr<HttpReplier> replier,
                    const std::string& model, int64_t version) {
  auto parsed = ParseHttpInfer(*ctx_, req.body, req.Header("inference-header-content-length"));
  if (!parsed.ok()) return replier->Reply(ErrorResponse(parsed.status()));
  RequestPtr r = std::move(parsed->request);
  r->model = model;
  r->version = version;
  r->timing.arrive = req.arrive_ns;
  auto options = parsed->options;
  ServerContext* ctx = ctx_;
  r->done = [replier, options, ctx](InferenceResponse&& resp) {
    replier->Reply(BuildHttpInferResponse(*ctx, std::move(resp), *options));
  };
  ctx_->manager().Infer(std::move(r));
}

void HttpApi::Handle(HttpRequest&& req, std::shared_ptr<HttpReplier> replier) {
  const std::vector<std::string> p = Split(req.path);
  const bool get = req.method == "GET", post = req.method == "POST";
  auto reply = [&](HttpResponse r) { replier->Reply(std::move(r)); };
  auto error = [&](const Status& st) { reply(ErrorResponse(st)); };
  auto wrong_method = [&](const char* allowed) {
    HttpResponse r = ErrorResponse(Status::InvalidArgument(req.method + " is not allowed on " +
                                                           req.path + "; use " + allowed));
    r.status = 405;
    r.headers.emplace_back("Allow", allowed);
    reply(std::move(r));
  };
  if (p.empty() || p[0] != "v2")
    return error(Status::NotFound("no endpoint " + req.path + " (the API is under /v2)"));
  // GET /v2: server metadata.
  if (p.size() == 1) {
    if (!get) return wrong_method("GET");
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("name");
    w.String(kServerName);
    w.Key("version");
    w.String(kServerVersion);
    w.Key("extensions");
    w.StartArray();
    for (const auto& e : ctx_->Extensions()) w.String(e.c_str());
    w.EndArray();
    w.EndObject();
    return reply(Json(std::string(sb.GetString(), sb.GetSize())));
  }
  const std::string& area = p[1];
  if (area == "health" && p.size() == 3) {
    if (!get) return wrong_method("GET");
    if (p[2] == "live") return reply(Empty(ctx_->Live() ? 200 : 503));
    if (p[2] == "ready") return reply(Empty(ctx_->Ready() ? 200 : 503));
  }
  if (area == "models") {
    // /v2/models/stats | /v2/models/{m}[/versions/{v}][/ready|/config|/infer|/stats]
    if (p.size() == 3 && p[2] == "stats") {
      if (!get) return wrong_method("GET");
      auto s = ctx_->manager().Stats("", 0);
      return s.ok() ? reply(Json(StatsJson(*s))) : error(s.status());
    }
    if (p.size() < 3) return error(Status::NotFound("no endpoint " + req.path));
    const std::string& model = p[2];
    size_t i = 3;
    int64_t version = 0;
    if (p.size() >= 5 && p[3] == "versions") {
      auto v = ParseVersion(p[4]);
      if (!v.ok()) return error(v.status());
      version = *v;
      i = 5;
    }
    const std::string action = i < p.size() ? p[i] : "";
    if (action == "instances") {
      // Live instances (admin): POST /v2/models/M/instances {"size": N[, "gpu": G][,
      // "max_batch": B]} adds one; POST .../instances/I {"size": N and / or "max_batch": B}
      // changes one; POST .../instances/I/remove removes one. Each replies with the slice.
      if (version != 0)
        return error(Status::InvalidArgument(
            "instances belong to a model's newest version: use /v2/models/" + model +
            "/instances"));
      if (!post) return wrong_method("POST");
      if (p.size() > i + 3) return error(Status::NotFound("no endpoint " + req.path));
      Status auth = ctx_->CheckAdmin(req.Header("authorization"));
      if (!auth.ok()) return error(auth);
      std::optional<int> index;
      if (p.size() > i + 1) {
        int n = -1;
        const std::string& t = p[i + 1];
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
        if (ec != std::errc() || end != t.data() + t.size() || n < 0)
          return error(Status::InvalidArgument("instance index must be a whole number >= 0, got '" +
                                               t + "'"));
        index = n;
      }
      if (p.size() == i + 3) {
        if (p[i + 2] != "remove") return error(Status::NotFound("no endpoint " + req.path));
        auto st = ctx_->manager().RemoveInstance(model, *index);
        return st.ok() ? reply(Json(SliceJson(*st))) : error(st.status());
      }
      auto body = ParseBody(req);
      if (!body.ok()) return error(body.status());
      const auto& d = *body;
      InstanceChange change;
      for (const char* key : {"size", "gpu", "max_batch"}) {
        if (!d.HasMember(key)) continue;
        if (!d[key].IsInt() || (index && std::string(key) == "gpu"))
          return error(Status::InvalidArgument(
              index ? "expected {\"size\": N} (threads on the CPU, SMs on a sliced GPU) and / or "
                      "{\"max_batch\": B} (0: the model's limit), whole numbers"
                    : "expected {\"size\": N} (threads on the CPU, SMs on a sliced GPU), with "
                      "optional \"gpu\": G and \"max_batch\": B, whole numbers"));
        const int v = d[key].GetInt();
        if (key[0] == 's') change.size = v;
        if (key[0] == 'g') change.gpu = v;
        if (key[0] == 'm') change.max_batch = v;
      }
      auto st = index ? ctx_->manager().ChangeInstance(model, *index, change)
                      : ctx_->manager().AddInstance(model, change);
      return st.ok() ? reply(Json(SliceJson(*st))) : error(st.status());
    }
    if (i + 1 < p.size()) return error(Status::NotFound("no endpoint " + req.path));
    if (action == "infer") {
      if (!post) return wrong_method("POST");
      return Infer(std::move(req), replier, model, version);
    }
    if (action == "stats") {
      if (!get) return wrong_method("GET");
      auto s = ctx_->manager().Stats(model, version);
      return s.ok() ? reply(Json(StatsJson(*s))) : error(s.status());
    }
    if (action == "slice") {
      // GET: the model's slice; POST {"threads": N} (CPU) or {"sms": N} (sliced GPU), and / or
      // {"max_batch": N} (the batch limit; 0: max_batch_size): change it live (admin).
      if (version != 0)
        return error(Status::InvalidArgument(
            "a slice applies to every version of a model: use /v2/models/" + model + "/slice"));
      if (get) {
        auto st = ctx_->manager().Slice(model);
        return st.ok() ? reply(Json(SliceJson(*st))) : error(st.status());
      }
      if (!post) return wrong_method("GET, POST");
      Status auth = ctx_->CheckAdmin(req.Header("authorization"));
      if (!auth.ok()) return error(auth);
      auto body = ParseBody(req);
      if (!body.ok()) return error(body.status());
      const auto& d = *body;
      const bool sms = d.HasMember("sms");
      const char* key = sms ? "sms" : "threads";
      const bool size = d.HasMember(key), limit = d.HasMember("max_batch");
      if ((!size && !limit) || (size && !d[key].IsInt()) || (limit && !d["max_batch"].IsInt()) ||
          (sms && d.HasMember("threads")))
        return error(Status::InvalidArgument(
            "expected {\"threads\": N} (CPU models) or {\"sms\": N} (GPU models), and / or "
            "{\"max_batch\": N} (the batch limit, 0 for max_batch_size), with N a whole "
            "number"));
      SliceChange change;
      if (size) (sms ? change.sms : change.threads) = d[key].GetInt();
      if (limit) change.max_batch = d["max_batch"].GetInt();
      auto st = ctx_->manager().ChangeSlice(model, change);
      return st.ok() ? reply(Json(SliceJson(*st))) : error(st.status());
    }
    if (!get) return wrong_method("GET");
    auto m = ctx_->manager().Get(model, version);
    if (action == "ready") return reply(Empty(m.ok() && (*m)->ready() ? 200 : 400));
    if (!m.ok()) return error(m.status());
    if (action.empty())
      return reply(Json(ModelMetadataJson(**m, ctx_->manager().ReadyVersions(model))));
    if (action == "config") return reply(Json(ModelConfigJson((*m)->config())));
    return error(Status::NotFound("no endpoint " + req.path));
  }
  if (area == "repository") {
    if (p.size() == 3 && p[2] == "index") {
      if (!post && !get) return wrong_method("POST");
      auto body = ParseBody(req);
      if (!body.ok()) return error(body.status());
      bool ready_only = false;
      if (body->HasMember("ready")) {
        if (!(*body)["ready"].IsBool())
          return error(Status::InvalidArgument("\"ready\" must be a bool"));
        ready_only = (*body)["ready"].GetBool();
      }
      rapidjson::StringBuffer sb;
      Writer w(sb);
      w.StartArray();
      for (const auto& e : ctx_->manager().Index()) {
        if (ready_only && e.state != ModelState::kReady) continue;
        w.StartObject();
        w.Key("name");
        w.String(e.name.c_str());
        if (e.version > 0) {
          w.Key("version");
          w.String(std::to_string(e.version).c_str());
        }
        w.Key("state");
        w.String(ModelStateName(e.state));
        w.Key("reason");
        w.String(e.reason.c_str());
        w.EndObject();
      }
      w.EndArray();
      return reply(Json(std::string(sb.GetString(), sb.GetSize())));
    }
    if (p.size() == 5 && p[2] == "models" && (p[4] == "load" || p[4] == "unload")) {
      if (!post) return wrong_method("POST");
      Status auth = ctx_->CheckAdmin(req.Header("authorization"));
      if (!auth.ok()) return error(auth);
      if (ctx_->manager().options().mode != ModelControlMode::kExplicit)
        return error(Status::FailedPrecondition(
            "repository load/unload needs --model-control-mode=explicit (the server runs in '" +
            std::string(ctx_->manager().options().mode == ModelControlMode::kPoll ? "poll"
                                                                                  : "none") +
            "' mode)"));
      auto body = ParseBody(req);
      if (!body.ok()) return error(body.status());
      if (body->HasMember("parameters") && (*body)["parameters"].IsObject() &&
          (*body)["parameters"].HasMember("config"))
        return error(Status::Unimplemented(
            "loading with an override config is not supported; edit config.pbtxt instead"));
      const std::string model = p[3];
      const bool load = p[4] == "load";
      ServerContext* ctx = ctx_;
      ctx_->RunAdmin([ctx, model, load, replier] {
        Status st = load ? ctx->manager().Load(model) : ctx->manager().Unload(model);
        replier->Reply(st.ok() ? Json("{}") : ErrorResponse(st));
      });
      return;
    }
  }
  if (area == "systemsharedmemory" || area == "cudasharedmemory") {
    const bool cuda = area == "cudasharedmemory";
    ShmRegistry& reg = cuda ? static_cast<ShmRegistry&>(ctx_->cuda_shm())
                            : static_cast<ShmRegistry&>(ctx_->system_shm());
    std::string region, action;
    if (p.size() == 3) {
      action = p[2];
    } else if (p.size() == 5 && p[2] == "region") {
      region = p[3];
      action = p[4];
    } else {
      return error(Status::NotFound("no endpoint " + req.path));
    }
    if (action == "status") {
      if (!get) return wrong_method("GET");
      auto s = reg.Status(region);
      return s.ok() ? reply(Json(ShmStatusJson(*s, cuda))) : error(s.status());
    }
    if (action != "register" && action != "unregister")
      return error(Status::NotFound("no endpoint " + req.path));
    if (!post) return wrong_method("POST");
    Status auth = ctx_->CheckAdmin(req.Header("authorization"));
    if (!auth.ok()) return error(auth);
    if (action == "unregister") {
      reg.Unregister(region);
      return reply(Json("{}"));
    }
    if (region.empty())
      return error(Status::InvalidArgument("register needs a region name in the path"));
    auto body = ParseBody(req);
    if (!body.ok()) return error(body.status());
    const auto& d = *body;
    auto uint_field = [&](const char* k) -> Result<uint64_t> {
      if (!d.HasMember(k)) return uint64_t{0};
      if (!d[k].IsUint64())
        return Status::InvalidArgument(std::string("\"") + k + "\" must be a non-negative integer");
      return d[k].GetUint64();
    };
    auto byte_size = uint_field("byte_size");
    if (!byte_size.ok()) return error(byte_size.status());
    if (!d.HasMember("byte_size"))
      return error(Status::InvalidArgument("\"byte_size\" is required"));
    Status st;
    if (cuda) {
      if (!d.HasMember("raw_handle") || !d["raw_handle"].IsObject() ||
          !d["raw_handle"].HasMember("b64") || !d["raw_handle"]["b64"].IsString())
        return error(Status::InvalidArgument("\"raw_handle\": {\"b64\": ...} is required"));
      auto handle = Base64Decode(d["raw_handle"]["b64"].GetString());
      if (!handle.ok()) return error(handle.status());
      auto dev = uint_field("device_id");
      if (!dev.ok()) return error(dev.status());
      st = ctx_->cuda_shm().Register(region, *handle, static_cast<int64_t>(*dev), *byte_size);
    } else {
      if (!d.HasMember("key") || !d["key"].IsString())
        return error(Status::InvalidArgument("\"key\" (the shm_open name) is required"));
      auto offset = uint_field("offset");
      if (!offset.ok()) return error(offset.status());
      st = ctx_->system_shm().Register(region, d["key"].GetString(), *offset, *byte_size);
    }
    return st.ok() ? reply(Json("{}")) : error(st);
  }
  if (area == "logging" && p.size() == 2) {
    if (get) return reply(Json(LogJson(ctx_->log_settings())));
    if (!post) return wrong_method("GET, POST");
    Status auth = ctx_->CheckAdmin(req.Header("authorization"));
    if (!auth.ok()) return error(auth);
    auto body = ParseBody(req);
    if (!body.ok()) return error(body.status());
    ServerContext::LogSettings s = ctx_->log_settings();
    for (const auto& m : body->GetObject()) {
      const std::string k = m.name.GetString();
      const auto& v = m.value;
      if (k == "log_info" && v.IsBool())
        s.info = v.GetBool();
      else if (k == "log_warning" && v.IsBool())
        s.warning = v.GetBool();
      else if (k == "log_error" && v.IsBool())
        s.error = v.GetBool();
      else if (k == "log_verbose_level" && v.IsUint())
        s.verbose_level = v.GetUint();
      else if (k == "log_format" && v.IsString())
        s.format = v.GetString();
      else if (k == "log_file")
        return error(Status::Unimplemented("log_file cannot be changed at run time"));
      else
        return error(Status::InvalidArgument("unknown or mistyped log setting '" + k + "'"));
    }
    Status st = ctx_->SetLogSettings(s);
    return st.ok() ? reply(Json(LogJson(ctx_->log_settings()))) : error(st);
  }
  if (area == "trace") return error(Status::Unimplemented("the trace extension is not supported"));
  error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

}  // namespace tessera::server
