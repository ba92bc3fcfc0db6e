// config.pbtxt <-> ModelConfig, through the protobuf types of proto/model_config.proto.
#include "tessera/model/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "model_config.pb.h"

namespace tessera {
namespace {

namespace pb = tessera::config;

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (text.empty())
      text = "line " + std::to_string(line + 1) + " column " + std::to_string(column + 1) + ": " +
             message;
  }
  void AddWarning(int, int, const std::string&) override {}
  std::string text;
};

DataType FromConfigType(pb::DataType t) {
  auto r = DataTypeFromName(pb::DataType_Name(t));
  return r.ok() ? *r : DataType::kInvalid;
}

pb::DataType ToConfigType(DataType t) {
  pb::DataType out = pb::TYPE_INVALID;
  pb::DataType_Parse(std::string("TYPE_") + DataTypeName(t), &out);
  return out;
}

template <typename List>
Status ReadTensors(const List& list, const char* what, std::vector<TensorConfig>* out) {
  for (const auto& t : list) {
    TensorConfig tc{t.name(), FromConfigType(t.data_type()), {t.dims().begin(), t.dims().end()}};
    if constexpr (std::is_same_v<std::decay_t<decltype(t)>, pb::ModelInput>)
      tc.optional = t.optional();
    if (tc.name.empty())
      return Status::InvalidArgument(std::string("config.pbtxt: an ") + what + " has no name");
    if (tc.dtype == DataType::kInvalid)
      return Status::InvalidArgument(std::string("config.pbtxt: ") + what + " '" + tc.name +
                                     "' has no supported data_type (" +
                                     pb::DataType_Name(t.data_type()) + ")");
    for (int64_t d : tc.dims)
      if (d < -1 || d == 0)
        return Status::InvalidArgument(std::string("config.pbtxt: ") + what + " '" + tc.name +
                                       "' has dim " + std::to_string(d) +
                                       "; expected a positive size or -1");
    out->push_back(std::move(tc));
  }
  return Status::OK();
}

QueuePolicy FromProto(const pb::ModelQueuePolicy& q) {
  QueuePolicy p;
  p.delay_on_timeout = q.timeout_action() == pb::ModelQueuePolicy::DELAY;
  p.default_timeout_us = q.default_timeout_microseconds();
  p.allow_timeout_override = q.allow_timeout_override();
  p.max_queue_size = q.max_queue_size();
  return p;
}

void ToProto(const QueuePolicy& p, pb::ModelQueuePolicy* q) {
  q->set_timeout_action(p.delay_on_timeout ? pb::ModelQueuePolicy::DELAY
                                           : pb::ModelQueuePolicy::REJECT);
  q->set_default_timeout_microseconds(p.default_timeout_us);
  q->set_allow_timeout_override(p.allow_timeout_override);
  q->set_max_queue_size(p.max_queue_size);
}

Result<ModelConfig> FromProto(const pb::ModelConfig& m) {
  ModelConfig c;
  c.name = m.name();
  c.platform = m.platform();
  c.backend = m.backend();
  if (m.max_batch_size() < 0)
    return Status::InvalidArgument("config.pbtxt: max_batch_size must be >= 0, got " +
                                   std::to_string(m.max_batch_size()));
  c.max_batch_size = m.max_batch_size();
  if (!m.default_model_filename().empty()) c.default_model_filename = m.default_model_filename();
  TESSERA_RETURN_IF_ERROR(ReadTensors(m.input(), "input", &c.inputs));
  TESSERA_RETURN_IF_ERROR(ReadTensors(m.output(), "output", &c.outputs));
  for (const auto& g : m.instance_group()) {
    InstanceGroup ig;
    ig.name = g.name();
    ig.count = g.count() == 0 ? 1 : g.count();
    ig.kind = static_cast<InstanceGroup::Kind>(g.kind());
    ig.gpus.assign(g.gpus().begin(), g.gpus().end());
    if (g.count() < 0)
      return Status::InvalidArgument("config.pbtxt: instance_group count must be >= 1, got " +
                                     std::to_string(g.count()));
    c.instance_groups.push_back(ig);
  }
  if (m.has_dynamic_batching()) {
    const auto& d = m.dynamic_batching();
    DynamicBatching b;
    b.preferred_batch_sizes.assign(d.preferred_batch_size().begin(),
                                   d.preferred_batch_size().end());
    b.max_queue_delay_us = d.max_queue_delay_microseconds();
    b.preserve_ordering = d.preserve_ordering();
    b.priority_levels = d.priority_levels();
    b.default_priority_level = d.default_priority_level();
    b.default_queue_policy = FromProto(d.default_queue_policy());
    for (const auto& [level, q] : d.priority_queue_policy())
      b.priority_queue_policy[level] = FromProto(q);
    c.dynamic_batching = b;
  }
  if (m.version_policy().has_all()) {
    c.version_policy.kind = VersionPolicy::Kind::kAll;
  } else if (m.version_policy().has_specific()) {
    c.version_policy.kind = VersionPolicy::Kind::kSpecific;
    const auto& v = m.version_policy().specific().versions();
    c.version_policy.versions.assign(v.begin(), v.end());
  } else if (m.version_policy().has_latest()) {
    c.version_policy.latest = m.version_policy().latest().num_versions();
  }
  for (const auto& w : m.model_warmup()) {
    WarmupSample s;
    s.name = w.name();
    s.batch_size = static_cast<int>(std::max<uint32_t>(1, w.batch_size()));
    s.count = static_cast<int>(std::max<uint32_t>(1, w.count()));
    for (const auto& [name, in] : w.inputs()) {
      WarmupSample::Input i;
      i.dtype = FromConfigType(in.data_type());
      i.dims.assign(in.dims().begin(), in.dims().end());
      i.random = in.random_data();
      i.data_file = in.input_data_file();
      if (i.dtype == DataType::kInvalid)
        return Status::InvalidArgument("config.pbtxt: model_warmup '" + w.name() + "' input '" +
                                       name + "' has no supported data_type");
      s.inputs[name] = i;
    }
    c.warmup.push_back(std::move(s));
  }
  for (const auto& [k, v] : m.parameters()) c.parameters[k] = v.string_value();
  c.proto_bytes = m.SerializeAsString();
  return c;
}

pb::ModelConfig ToProto(const ModelConfig& c) {
  pb::ModelConfig m;
  m.ParseFromString(c.proto_bytes);
  m.set_name(c.name);
  m.set_platform(c.platform);
  m.set_backend(c.backend);
  m.set_max_batch_size(c.max_batch_size);
  if (c.default_model_filename != "model.onnx" || !m.default_model_filename().empty())
    m.set_default_model_filename(c.default_model_filename);
  m.clear_input();
  for (const auto& t : c.inputs) {
    auto* x = m.add_input();
    x->set_name(t.name);
    x->set_data_type(ToConfigType(t.dtype));
    for (int64_t d : t.dims) x->add_dims(d);
    x->set_optional(t.optional);
  }
  // Outputs keep fields Tessera does not model (label_filename, reshape) when names match.
  std::map<std::string, pb::ModelOutput> old_outputs;
  for (const auto& o : m.output()) old_outputs[o.name()] = o;
  m.clear_output();
  for (const auto& t : c.outputs) {
    auto* x = m.add_output();
    if (old_outputs.count(t.name)) *x = old_outputs[t.name];
    x->set_name(t.name);
    x->set_data_type(ToConfigType(t.dtype));
    x->clear_dims();
    for (int64_t d : t.dims) x->add_dims(d);
  }
  m.clear_instance_group();
  for (const auto& g : c.instance_groups) {
    auto* x = m.add_instance_group();
    x->set_name(g.name);
    x->set_count(g.count);
    x->set_kind(static_cast<pb::ModelInstanceGroup::Kind>(g.kind));
    for (int gpu : g.gpus) x->add_gpus(gpu);
  }
  if (c.dynamic_batching) {
    const auto& b = *c.dynamic_batching;
    auto* d = m.mutable_dynamic_batching();
    d->clear_preferred_batch_size();
    for (int s : b.preferred_batch_sizes) d->add_preferred_batch_size(s);
    d->set_max_queue_delay_microseconds(b.max_queue_delay_us);
    d->set_preserve_ordering(b.preserve_ordering);
    d->set_priority_levels(b.priority_levels);
    d->set_default_priority_level(b.default_priority_level);
    const QueuePolicy& q = b.default_queue_policy;
    if (d->has_default_queue_policy() || q.delay_on_timeout || q.default_timeout_us ||
        q.allow_timeout_override || q.max_queue_size)
      ToProto(q, d->mutable_default_queue_policy());
    d->clear_priority_queue_policy();
    for (const auto& [level, q] : b.priority_queue_policy)
      ToProto(q, &(*d->mutable_priority_queue_policy())[level]);
  } else {
    m.clear_dynamic_batching();
  }
  const bool default_policy =
      c.version_policy.kind == VersionPolicy::Kind::kLatest && c.version_policy.latest == 1;
  auto* vp = default_policy && !m.has_version_policy() ? nullptr : m.mutable_version_policy();
  if (vp) switch (c.version_policy.kind) {
      case VersionPolicy::Kind::kLatest:
        vp->mutable_latest()->set_num_versions(c.version_policy.latest);
        break;
      case VersionPolicy::Kind::kAll:
        vp->mutable_all();
        break;
      case VersionPolicy::Kind::kSpecific:
        vp->mutable_specific()->clear_versions();
        for (int64_t v : c.version_policy.versions) vp->mutable_specific()->add_versions(v);
        break;
    }
  m.clear_parameters();
  for (const auto& [k, v] : c.parameters) (*m.mutable_parameters())[k].set_string_value(v);
  return m;
}

bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80           ? 1
                     : (c >> 5) == 0x6  ? 2
                     : (c >> 4) == 0xe  ? 3
                     : (c >> 3) == 0x1e ? 4
                                        : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += n;
  }
  return true;
}

// The first string field (path) that is not valid UTF-8, or "" when all are: proto3 strings
// must be UTF-8, or the binary form Tessera sends in gRPC config responses cannot be read.
std::string FindInvalidUtf8(const google::protobuf::Message& m, const std::string& path) {
  using google::protobuf::FieldDescriptor;
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string p = path.empty() ? f->name() : path + "." + f->name();
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int k = 0; k < r->FieldSize(m, f); ++k)
          if (!ValidUtf8(r->GetRepeatedString(m, f, k))) return p;
      } else if (!ValidUtf8(r->GetString(m, f))) {
        return p;
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int k = 0; k < r->FieldSize(m, f); ++k) {
          std::string bad = FindInvalidUtf8(r->GetRepeatedMessage(m, f, k), p);
          if (!bad.empty()) return bad;
        }
      } else if (r->HasField(m, f)) {
        std::string bad = FindInvalidUtf8(r->GetMessage(m, f), p);
        if (!bad.empty()) return bad;
      }
    }
  }
  return "";
}

}  // namespace

Result<std::vector<int64_t>> VersionPolicy::Select(const std::vector<int64_t>& available) const {
  std::vector<int64_t> have = available;
  std::sort(have.begin(), have.end());
  if (have.empty()) return Status::NotFound("no numeric version directory holds a model file");
  switch (kind) {
    case Kind::kAll:
      return have;
    case Kind::kLatest: {
      const size_t n = std::max<uint32_t>(1, latest);
      return std::vector<int64_t>(have.end() - std::min(n, have.size()), have.end());
    }
    case Kind::kSpecific: {
      std::vector<int64_t> out;
      for (int64_t v : versions) {
        if (!std::binary_search(have.begin(), have.end(), v))
          return Status::NotFound("version_policy names version " + std::to_string(v) +
                                  ", which is not in the repository");
        out.push_back(v);
      }
      std::sort(out.begin(), out.end());
      out.erase(std::unique(out.begin(), out.end()), out.end());
      if (out.empty()) return Status::InvalidArgument("version_policy.specific lists no version");
      return out;
    }
  }
  return have;
}

namespace {
// A parameter holding a finite number > 0; nullopt when absent or anything else.
std::optional<double> PositiveParameter(const std::map<std::string, std::string>& parameters,
                                        const char* key) {
  auto it = parameters.find(key);
  if (it == parameters.end()) return std::nullopt;
  try {
    size_t used = 0;
    const double v = std::stod(it->second, &used);
    if (used != it->second.size() || !(v > 0) || !std::isfinite(v)) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}
}  // namespace

std::optional<double> ModelConfig::SloMs() const { return PositiveParameter(parameters, "slo_ms"); }

std::optional<ModelConfig::Slice> ModelConfig::SliceRequest() const {
  if (auto sms = PositiveParameter(parameters, "slice_sms");
      sms && *sms == std::floor(*sms) && *sms <= 1e6)
    return Slice{static_cast<int>(*sms), 0};
  if (auto pct = PositiveParameter(parameters, "slice_percent"); pct && *pct <= 100)
    return Slice{0, *pct};
  return std::nullopt;
}

int ModelConfig::InstanceCount() const { return static_cast<int>(InstanceGpus().size()); }

std::vector<int> ModelConfig::InstanceGpus() const {
  std::vector<int> out;
  for (const auto& g : instance_groups) {
    if (g.gpus.empty() || g.kind == InstanceGroup::Kind::kCpu) {
      out.insert(out.end(), std::max(0, g.count), -1);
      continue;
    }
    for (int gpu : g.gpus) out.insert(out.end(), std::max(0, g.count), gpu);
  }
  if (out.empty()) out.push_back(-1);
  return out;
}

Result<ModelConfig> ParseModelConfig(const std::string& text) {
  pb::ModelConfig m;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(text, &m))
    return Status::InvalidArgument("config.pbtxt: " + errors.text);
  const std::string bad = FindInvalidUtf8(m, "");
  if (!bad.empty())
    return Status::InvalidArgument("config.pbtxt: field '" + bad +
                                   "' is not valid UTF-8; config strings must be UTF-8");
  return FromProto(m);
}

Status ValidateModelConfig(const ModelConfig& c) {
  const std::string where = "model '" + c.name + "': ";
  static const std::set<std::string> kPlatforms = {"", "onnxruntime_onnx", "onnx", "tessera"};
  static const std::set<std::string> kBackends = {"", "onnxruntime", "tessera"};
  if (!kPlatforms.count(c.platform))
    return Status::Unimplemented(where + "platform '" + c.platform +
                                 "' is not supported; Tessera serves ONNX models "
                                 "(platform \"onnxruntime_onnx\")");
  if (!kBackends.count(c.backend))
    return Status::Unimplemented(where + "backend '" + c.backend +
                                 "' is not supported; Tessera serves ONNX models "
                                 "(backend \"onnxruntime\")");
  for (const auto& g : c.instance_groups)
    if (g.count < 1 || g.count > 64)
      return Status::InvalidArgument(where + "instance_group count " + std::to_string(g.count) +
                                     " is out of range; expected 1 to 64");
  if (c.dynamic_batching) {
    const auto& b = *c.dynamic_batching;
    for (int s : b.preferred_batch_sizes)
      if (s < 1 || (c.max_batch_size > 0 && s > c.max_batch_size))
        return Status::InvalidArgument(where + "preferred_batch_size " + std::to_string(s) +
                                       " must be between 1 and max_batch_size (" +
                                       std::to_string(c.max_batch_size) + ")");
    if (b.priority_levels > 0 &&
        (b.default_priority_level < 1 || b.default_priority_level > b.priority_levels))
      return Status::InvalidArgument(
          where + "default_priority_level must be between 1 and priority_levels (" +
          std::to_string(b.priority_levels) + ") when priority_levels is set");
    if (b.priority_levels > 1000)
      return Status::InvalidArgument(where + "priority_levels " +
                                     std::to_string(b.priority_levels) +
                                     " is out of range; expected at most 1000");
    for (const auto& [level, q] : b.priority_queue_policy)
      if (level < 1 || level > b.priority_levels)
        return Status::InvalidArgument(where + "priority_queue_policy names level " +
                                       std::to_string(level) + "; expected 1 to " +
                                       std::to_string(b.priority_levels));
  }
  if (c.parameters.count("slo_ms") && !c.SloMs())
    return Status::InvalidArgument(where + "parameter slo_ms is '" + c.parameters.at("slo_ms") +
                                   "'; expected a positive number of milliseconds");
  const bool by_sms = c.parameters.count("slice_sms") > 0;
  const bool by_pct = c.parameters.count("slice_percent") > 0;
  if (by_sms && by_pct)
    return Status::InvalidArgument(where +
                                   "parameters slice_sms and slice_percent are both set; "
                                   "expected at most one");
  if ((by_sms || by_pct) && !c.SliceRequest())
    return Status::InvalidArgument(
        where + "parameter " + (by_sms ? "slice_sms" : "slice_percent") + " is '" +
        c.parameters.at(by_sms ? "slice_sms" : "slice_percent") + "'; expected " +
        (by_sms ? "a positive whole number of SMs" : "a percentage of the GPU's SMs in (0, 100]"));
  if (auto it = c.parameters.find("precision"); it != c.parameters.end() && it->second != "fp32" &&
                                                it->second != "tf32" && it->second != "fp16" &&
                                                it->second != "bf16")
    return Status::InvalidArgument(where + "parameter precision is '" + it->second +
                                   "'; expected fp32, tf32, fp16 or bf16 (the GPU math)");
  for (const auto& w : c.warmup)
    if (c.max_batch_size > 0 && w.batch_size > c.max_batch_size)
      return Status::InvalidArgument(where + "model_warmup '" + w.name + "' batch_size " +
                                     std::to_string(w.batch_size) + " exceeds max_batch_size " +
                                     std::to_string(c.max_batch_size));
  return Status::OK();
}

std::string FormatModelConfig(const ModelConfig& c) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(ToProto(c), &out);
  return out;
}

std::string ModelConfigProtoBytes(const ModelConfig& c) { return ToProto(c).SerializeAsString(); }

ModelConfig DeriveModelConfig(const std::string& name, const Graph& graph, int max_batch_size) {
  ModelConfig c;
  c.name = name;
  c.platform = "onnxruntime_onnx";
  bool batched = max_batch_size > 0;
  for (const auto& in : graph.inputs)
    if (in.dims.empty() || in.dims[0] >= 0) batched = false;
  c.max_batch_size = batched ? max_batch_size : 0;
  auto conv = [&](const std::vector<ValueInfo>& vs, std::vector<TensorConfig>* out) {
    for (const auto& v : vs) {
      TensorConfig t{v.name, v.dtype, {}};
      for (size_t i = batched ? 1 : 0; i < v.dims.size(); ++i) t.dims.push_back(v.dims[i]);
      out->push_back(t);
    }
  };
  conv(graph.inputs, &c.inputs);
  conv(graph.outputs, &c.outputs);
  c.proto_bytes = ModelConfigProtoBytes(c);
  return c;
}

Status CompleteModelConfig(const Graph& graph, ModelConfig* c) {
  const std::string where = "model '" + c->name + "': ";
  if (c->platform.empty() && c->backend.empty()) c->platform = "onnxruntime_onnx";
  const size_t skip = c->max_batch_size > 0 ? 1 : 0;
  auto complete = [&](const std::vector<ValueInfo>& graph_values, const char* what,
                      std::vector<TensorConfig>* cfg) -> Status {
    if (cfg->empty()) {
      for (const auto& v : graph_values) {
        TensorConfig t{v.name, v.dtype, {}};
        if (skip && (v.dims.empty()))
          return Status::InvalidArgument(where + what + " '" + v.name +
                                         "' is a scalar, but max_batch_size > 0 needs a batch dim");
        for (size_t i = skip; i < v.dims.size(); ++i) t.dims.push_back(v.dims[i]);
        cfg->push_back(t);
      }
      return Status::OK();
    }
    for (const auto& t : *cfg) {
      auto it = std::find_if(graph_values.begin(), graph_values.end(),
                             [&](const ValueInfo& v) { return v.name == t.name; });
      if (it == graph_values.end()) {
        std::string names;
        for (const auto& v : graph_values) names += (names.empty() ? "" : ", ") + v.name;
        return Status::InvalidArgument(where + "config " + what + " '" + t.name +
                                       "' is not in the ONNX model (its " + what + "s: " + names +
                                       ")");
      }
      if (it->dtype != t.dtype)
        return Status::InvalidArgument(where + what + " '" + t.name + "' is " +
                                       DataTypeName(t.dtype) + " in config.pbtxt but " +
                                       DataTypeName(it->dtype) + " in the ONNX model");
      if (it->dims.size() != t.dims.size() + skip)
        return Status::InvalidArgument(where + what + " '" + t.name + "' has " +
                                       std::to_string(t.dims.size()) + " dims in config.pbtxt" +
                                       (skip ? " (plus the batch dim)" : "") + " but " +
                                       std::to_string(it->dims.size()) + " in the ONNX model");
      if (skip && it->dims[0] >= 0)
        return Status::InvalidArgument(where + what + " '" + t.name + "' has a fixed leading dim " +
                                       std::to_string(it->dims[0]) +
                                       " in the ONNX model; max_batch_size > 0 needs it dynamic");
      for (size_t i = 0; i < t.dims.size(); ++i) {
        const int64_t g = it->dims[i + skip], d = t.dims[i];
        if (g >= 0 && d >= 0 && g != d)
          return Status::InvalidArgument(where + what + " '" + t.name + "' dim " +
                                         std::to_string(i) + " is " + std::to_string(d) +
                                         " in config.pbtxt but " + std::to_string(g) +
                                         " in the ONNX model");
      }
    }
    return Status::OK();
  };
  TESSERA_RETURN_IF_ERROR(complete(graph.inputs, "input", &c->inputs));
  TESSERA_RETURN_IF_ERROR(complete(graph.outputs, "output", &c->outputs));
  for (const auto& v : graph.inputs) {
    bool listed = std::any_of(c->inputs.begin(), c->inputs.end(),
                              [&](const TensorConfig& t) { return t.name == v.name; });
    if (!listed)
      return Status::InvalidArgument(where + "ONNX input '" + v.name +
                                     "' is missing from config.pbtxt's inputs");
  }
  TESSERA_RETURN_IF_ERROR(ValidateModelConfig(*c));
  c->proto_bytes = ModelConfigProtoBytes(*c);
  return Status::OK();
}

}  // namespace tessera
