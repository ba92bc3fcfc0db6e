#include "server/http_infer.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "tessera/core/clock.h"

namespace tessera::server {
namespace {

using rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

Status Bad(const std::string& m) { return Status::InvalidArgument(m); }

Result<uint64_t> GetUint(const Value& v, const std::string& what) {
  if (v.IsUint64()) return v.GetUint64();
  return Bad(what + " must be a non-negative integer");
}

Result<bool> GetBool(const Value& v, const std::string& what) {
  if (v.IsBool()) return v.GetBool();
  return Bad(what + " must be true or false");
}

// Appends JSON `data` (flat or nested arrays, row-major) as elements of type T to `out`.
template <typename T>
Status Flatten(const Value& v, const std::string& name, std::vector<T>* out, int depth = 0) {
  if (depth > 32) return Bad("input '" + name + "': data is nested too deeply");
  if (v.IsArray()) {
    for (const auto& e : v.GetArray()) TESSERA_RETURN_IF_ERROR(Flatten(e, name, out, depth + 1));
    return Status::OK();
  }
  const std::string where = "input '" + name + "' element " + std::to_string(out->size());
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.IsBool()) return Bad(where + " must be true or false");
    out->push_back(v.GetBool());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.IsNumber()) return Bad(where + " must be a number");
    out->push_back(static_cast<T>(v.GetDouble()));
  } else if constexpr (std::is_signed_v<T>) {
    if (!v.IsInt64()) return Bad(where + " must be an integer");
    const int64_t x = v.GetInt64();
    if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max())
      return Bad(where + " = " + std::to_string(x) + " is out of range for its datatype");
    out->push_back(static_cast<T>(x));
  } else {
    if (!v.IsUint64()) return Bad(where + " must be a non-negative integer");
    const uint64_t x = v.GetUint64();
    if (x > std::numeric_limits<T>::max())
      return Bad(where + " = " + std::to_string(x) + " is out of range for its datatype");
    out->push_back(static_cast<T>(x));
  }
  return Status::OK();
}

// Leaves of a (nested) JSON array; stops counting once past `limit`.
int64_t CountLeaves(const Value& v, int64_t limit, int depth = 0) {
  if (!v.IsArray() || depth > 32) return 1;
  int64_t n = 0;
  for (const auto& e : v.GetArray()) {
    n += CountLeaves(e, limit - n, depth + 1);
    if (n > limit) break;
  }
  return n;
}

template <typename T, typename Conv>
Result<Tensor> Typed(const Value& data, const std::string& name, DataType dtype, const Shape& shape,
                     int64_t n, Conv conv) {
  // Count before allocating: the shape is the client's claim, the data is what it sent.
  const int64_t have = CountLeaves(data, n);
  if (have != n)
    return Bad("input '" + name + "': shape " + ShapeToString(shape) + " has " + std::to_string(n) +
               " elements, data has " + (have > n ? "more" : std::to_string(have)));
  std::vector<T> flat;
  flat.reserve(static_cast<size_t>(n));
  TESSERA_RETURN_IF_ERROR(Flatten(data, name, &flat));
  Tensor t = Tensor::Allocate(dtype, shape);
  conv(flat, t);
  return t;
}

Result<Tensor> FromJsonData(const Value& data, const std::string& name, DataType dtype,
                            const Shape& shape) {
  TESSERA_ASSIGN_OR_RETURN(int64_t n, CheckShape(shape, name));
  auto copy = [](const auto& flat, Tensor& t) {
    using T = typename std::decay_t<decltype(flat)>::value_type;
    T* dst = t.data<T>();
    for (size_t i = 0; i < flat.size(); ++i) dst[i] = flat[i];
  };
  switch (dtype) {
    case DataType::kBool:
      return Typed<bool>(data, name, dtype, shape, n, [](const std::vector<bool>& f, Tensor& t) {
        for (size_t i = 0; i < f.size(); ++i) t.data<uint8_t>()[i] = f[i] ? 1 : 0;
      });
    case DataType::kUInt8:
      return Typed<uint8_t>(data, name, dtype, shape, n, copy);
    case DataType::kUInt16:
      return Typed<uint16_t>(data, name, dtype, shape, n, copy);
    case DataType::kUInt32:
      return Typed<uint32_t>(data, name, dtype, shape, n, copy);
    case DataType::kUInt64:
      return Typed<uint64_t>(data, name, dtype, shape, n, copy);
    case DataType::kInt8:
      return Typed<int8_t>(data, name, dtype, shape, n, copy);
    case DataType::kInt16:
      return Typed<int16_t>(data, name, dtype, shape, n, copy);
    case DataType::kInt32:
      return Typed<int32_t>(data, name, dtype, shape, n, copy);
    case DataType::kInt64:
      return Typed<int64_t>(data, name, dtype, shape, n, copy);
    case DataType::kFloat32:
      return Typed<float>(data, name, dtype, shape, n, copy);
    case DataType::kFloat64:
      return Typed<double>(data, name, dtype, shape, n, copy);
    case DataType::kFloat16:
      return Typed<float>(data, name, dtype, shape, n, [](const std::vector<float>& f, Tensor& t) {
        for (size_t i = 0; i < f.size(); ++i) t.data<uint16_t>()[i] = FloatToHalf(f[i]);
      });
    case DataType::kBFloat16:
      return Typed<float>(data, name, dtype, shape, n, [](const std::vector<float>& f, Tensor& t) {
        for (size_t i = 0; i < f.size(); ++i) t.data<uint16_t>()[i] = FloatToBf16(f[i]);
      });
    case DataType::kInvalid:
      break;
  }
  return Bad("input '" + name + "': unsupported datatype");
}

// Reads the shared-memory parameters of a tensor; false when it has none.
Result<bool> ShmParams(const Value& params, const std::string& what, ShmRef* ref) {
  if (!params.HasMember("shared_memory_region")) return false;
  const Value& r = params["shared_memory_region"];
  if (!r.IsString()) return Bad(what + ": shared_memory_region must be a string");
  ref->region = r.GetString();
  if (params.HasMember("shared_memory_offset")) {
    TESSERA_ASSIGN_OR_RETURN(
        ref->offset, GetUint(params["shared_memory_offset"], what + ": shared_memory_offset"));
  }
  if (!params.HasMember("shared_memory_byte_size"))
    return Bad(what + ": shared_memory_byte_size is required with shared_memory_region");
  TESSERA_ASSIGN_OR_RETURN(ref->byte_size, GetUint(params["shared_memory_byte_size"],
                                                   what + ": shared_memory_byte_size"));
  return true;
}

Result<Shape> GetShape(const Value& in, const std::string& name) {
  if (!in.HasMember("shape") || !in["shape"].IsArray())
    return Bad("input '" + name + "' needs a \"shape\" array");
  Shape s;
  for (const auto& d : in["shape"].GetArray()) {
    if (!d.IsInt64() || d.GetInt64() < 0)
      return Bad("input '" + name + "': shape entries must be non-negative integers");
    s.push_back(d.GetInt64());
  }
  return s;
}

void WriteFloat(Writer& w, double v, bool single) {
  if (!std::isfinite(v)) {  // JSON has no NaN / Inf
    w.Null();
    return;
  }
  char buf[32];
  auto r = single ? std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v))
                  : std::to_chars(buf, buf + sizeof(buf), v);
  w.RawValue(buf, static_cast<size_t>(r.ptr - buf), rapidjson::kNumberType);
}

void WriteData(Writer& w, const Tensor& t) {
  w.StartArray();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype()) {
      case DataType::kBool:
        w.Bool(t.data<uint8_t>()[i] != 0);
        break;
      case DataType::kUInt8:
        w.Uint(t.data<uint8_t>()[i]);
        break;
      case DataType::kUInt16:
        w.Uint(t.data<uint16_t>()[i]);
        break;
      case DataType::kUInt32:
        w.Uint(t.data<uint32_t>()[i]);
        break;
      case DataType::kUInt64:
        w.Uint64(t.data<uint64_t>()[i]);
        break;
      case DataType::kInt8:
        w.Int(t.data<int8_t>()[i]);
        break;
      case DataType::kInt16:
        w.Int(t.data<int16_t>()[i]);
        break;
      case DataType::kInt32:
        w.Int(t.data<int32_t>()[i]);
        break;
      case DataType::kInt64:
        w.Int64(t.data<int64_t>()[i]);
        break;
      case DataType::kFloat16:
        WriteFloat(w, HalfToFloat(t.data<uint16_t>()[i]), true);
        break;
      case DataType::kBFloat16:
        WriteFloat(w, Bf16ToFloat(t.data<uint16_t>()[i]), true);
        break;
      case DataType::kFloat32:
        WriteFloat(w, t.data<float>()[i], true);
        break;
      case DataType::kFloat64:
        WriteFloat(w, t.data<double>()[i], false);
        break;
      case DataType::kInvalid:
        w.Null();
        break;
    }
  }
  w.EndArray();
}

void WriteShape(Writer& w, const Shape& s) {
  w.StartArray();
  for (int64_t d : s) w.Int64(d);
  w.EndArray();
}

}  // namespace

Result<ParsedHttpInfer> ParseHttpInfer(ServerContext& ctx, const std::shared_ptr<Body>& body,
                                       const std::string* header_length) {
  size_t json_len = body->size();
  if (header_length) {
    uint64_t n = 0;
    auto [p, ec] =
        std::from_chars(header_length->data(), header_length->data() + header_length->size(), n);
    if (ec != std::errc() || p != header_length->data() + header_length->size() || n > body->size())
      return Bad("Inference-Header-Content-Length is '" + *header_length +
                 "'; expected the JSON header's byte count, at most the body size (" +
                 std::to_string(body->size()) + ")");
    json_len = static_cast<size_t>(n);
  }
  rapidjson::Document d;
  d.Parse(body->data(), json_len);
  if (d.HasParseError())
    return Bad("request JSON is malformed at byte " + std::to_string(d.GetErrorOffset()) + ": " +
               rapidjson::GetParseError_En(d.GetParseError()));
  if (!d.IsObject()) return Bad("the request body must be a JSON object");

  ParsedHttpInfer out;
  out.request = std::make_unique<InferenceRequest>();
  out.options = std::make_shared<HttpInferOptions>();
  InferenceRequest& r = *out.request;
  if (d.HasMember("id")) {
    if (!d["id"].IsString()) return Bad("\"id\" must be a string");
    r.id = d["id"].GetString();
  }
  if (d.HasMember("parameters")) {
    const Value& p = d["parameters"];
    if (!p.IsObject()) return Bad("\"parameters\" must be an object");
    for (const auto& m : p.GetObject()) {
      const std::string key = m.name.GetString();
      if (key == "priority") {
        TESSERA_ASSIGN_OR_RETURN(r.priority, GetUint(m.value, "parameter priority"));
      } else if (key == "timeout") {
        TESSERA_ASSIGN_OR_RETURN(r.timeout_us, GetUint(m.value, "parameter timeout (us)"));
      } else if (key == "binary_data_output") {
        TESSERA_ASSIGN_OR_RETURN(out.options->binary_all,
                                 GetBool(m.value, "parameter binary_data_output"));
      } else if (key == "tessera_timing") {
        TESSERA_ASSIGN_OR_RETURN(out.options->timing, GetBool(m.value, "parameter tessera_timing"));
      } else if (key == "sequence_id" || key == "sequence_start" || key == "sequence_end") {
        return Status::Unimplemented("parameter " + key +
                                     ": sequence batching is not supported by Tessera");
      }
    }
  }
  if (!d.HasMember("inputs") || !d["inputs"].IsArray() || d["inputs"].Empty())
    return Bad("the request needs a non-empty \"inputs\" array");
  const char* binary = body->data() + json_len;
  size_t binary_left = body->size() - json_len;
  std::shared_ptr<const void> holder = body;
  for (const auto& in : d["inputs"].GetArray()) {
    if (!in.IsObject()) return Bad("every entry of \"inputs\" must be an object");
    if (!in.HasMember("name") || !in["name"].IsString())
      return Bad("every input needs a \"name\" string");
    const std::string name = in["name"].GetString();
    if (!in.HasMember("datatype") || !in["datatype"].IsString())
      return Bad("input '" + name + "' needs a \"datatype\" string");
    TESSERA_ASSIGN_OR_RETURN(DataType dtype, ParseDatatype(in["datatype"].GetString(), name));
    TESSERA_ASSIGN_OR_RETURN(Shape shape, GetShape(in, name));
    Tensor t;
    const bool has_params = in.HasMember("parameters");
    if (has_params && !in["parameters"].IsObject())
      return Bad("input '" + name + "': \"parameters\" must be an object");
    ShmRef ref;
    bool shm = false;
    if (has_params) {
      TESSERA_ASSIGN_OR_RETURN(shm, ShmParams(in["parameters"], "input '" + name + "'", &ref));
    }
    if (shm) {
      TESSERA_ASSIGN_OR_RETURN(t, InputFromShm(ctx, name, dtype, shape, ref));
    } else if (has_params && in["parameters"].HasMember("binary_data_size")) {
      TESSERA_ASSIGN_OR_RETURN(uint64_t size, GetUint(in["parameters"]["binary_data_size"],
                                                      "input '" + name + "': binary_data_size"));
      if (size > binary_left)
        return Bad("input '" + name + "' declares " + std::to_string(size) +
                   " binary bytes, but only " + std::to_string(binary_left) +
                   " bytes follow the JSON header");
      TESSERA_ASSIGN_OR_RETURN(t, InputFromBytes(name, dtype, shape, binary, size, holder));
      binary += size;
      binary_left -= size;
    } else {
      if (!in.HasMember("data"))
        return Bad("input '" + name +
                   "' has no \"data\", binary_data_size or shared_memory_region");
      TESSERA_ASSIGN_OR_RETURN(t, FromJsonData(in["data"], name, dtype, shape));
    }
    r.input_names.push_back(name);
    r.inputs.push_back(std::move(t));
  }
  if (binary_left)
    return Bad(std::to_string(binary_left) +
               " bytes after the JSON header belong to no input (binary_data_size mismatch)");
  if (d.HasMember("outputs")) {
    if (!d["outputs"].IsArray()) return Bad("\"outputs\" must be an array");
    for (const auto& o : d["outputs"].GetArray()) {
      if (!o.IsObject() || !o.HasMember("name") || !o["name"].IsString())
        return Bad("every requested output needs a \"name\" string");
      OutputRequest req;
      req.name = o["name"].GetString();
      req.binary = out.options->binary_all;
      if (o.HasMember("parameters")) {
        const Value& p = o["parameters"];
        if (!p.IsObject())
          return Bad("output '" + req.name + "': \"parameters\" must be an object");
        if (p.HasMember("classification"))
          return Status::Unimplemented("output '" + req.name +
                                       "': the classification extension is not supported");
        if (p.HasMember("binary_data")) {
          TESSERA_ASSIGN_OR_RETURN(
              req.binary, GetBool(p["binary_data"], "output '" + req.name + "': binary_data"));
        }
        TESSERA_ASSIGN_OR_RETURN(req.shm, ShmParams(p, "output '" + req.name + "'", &req.shm_ref));
        if (req.shm) TESSERA_RETURN_IF_ERROR(ResolveShm(ctx, &req.shm_ref));
      }
      for (const auto& prev : out.options->outputs)
        if (prev.name == req.name) return Bad("output '" + req.name + "' is requested twice");
      r.outputs.push_back(req.name);
      out.options->outputs.push_back(std::move(req));
    }
  }
  return out;
}

HttpResponse BuildHttpInferResponse(ServerContext& ctx, InferenceResponse&& resp,
                                    const HttpInferOptions& options) {
  if (!resp.status.ok()) return ErrorResponse(resp.status);
  HttpResponse out;
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("model_name");
  w.String(resp.model.c_str());
  w.Key("model_version");
  w.String(std::to_string(resp.version).c_str());
  if (!resp.id.empty()) {
    w.Key("id");
    w.String(resp.id.c_str());
  }
  if (options.timing) {
    const RequestTiming& t = resp.timing;
    w.Key("parameters");
    w.StartObject();
    const int64_t built = SystemClock::Default()->NowNs();
    w.Key("tessera_queue_ns");
    w.Int64(t.dispatch - t.enqueue);
    w.Key("tessera_compute_input_ns");
    w.Int64(t.input_done - t.dispatch);
    w.Key("tessera_compute_infer_ns");
    w.Int64(t.infer_done - t.input_done);
    w.Key("tessera_compute_output_ns");
    w.Int64(t.output_done - t.infer_done);
    w.Key("tessera_server_ns");  // arrival (whole request read) to this response being built
    w.Int64(built - t.arrive);
    w.Key("tessera_batch_rows");
    w.Int64(resp.batch_rows);
    if (resp.gpu_sms > 0) {
      w.Key("tessera_gpu_sms");
      w.Int(resp.gpu_sms);
    } else {
      w.Key("tessera_compute_threads");
      w.Int(resp.compute_threads);
    }
    w.EndObject();
  }
  w.Key("outputs");
  w.StartArray();
  for (size_t i = 0; i < resp.outputs.size(); ++i) {
    const std::string& name = resp.output_names[i];
    const Tensor& t = resp.outputs[i];
    const OutputRequest* req = nullptr;
    for (const auto& o : options.outputs)
      if (o.name == name) req = &o;
    const bool binary = req ? req->binary : options.binary_all;
    w.StartObject();
    w.Key("name");
    w.String(name.c_str());
    w.Key("datatype");
    w.String(DataTypeName(t.dtype()));
    w.Key("shape");
    WriteShape(w, t.shape());
    if (req && req->shm) {
      Status st = OutputToShm(ctx, name, t, req->shm_ref);
      if (!st.ok()) return ErrorResponse(st);
      w.Key("parameters");
      w.StartObject();
      w.Key("shared_memory_region");
      w.String(req->shm_ref.region.c_str());
      w.Key("shared_memory_offset");
      w.Uint64(req->shm_ref.offset);
      w.Key("shared_memory_byte_size");
      w.Uint64(t.nbytes());
      w.EndObject();
    } else if (binary) {
      w.Key("parameters");
      w.StartObject();
      w.Key("binary_data_size");
      w.Uint64(t.nbytes());
      w.EndObject();
      out.tail.push_back(t);
    } else {
      w.Key("data");
      WriteData(w, t);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  out.body.assign(sb.GetString(), sb.GetSize());
  if (out.tail.empty()) {
    out.headers.emplace_back("Content-Type", "application/json");
  } else {
    out.headers.emplace_back("Content-Type", "application/octet-stream");
    out.headers.emplace_back("Inference-Header-Content-Length", std::to_string(out.body.size()));
  }
  return out;
}

}  // namespace tessera::server
