#include "server/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <charconv>
#include <chrono>
#include <deque>
#include <mutex>

#include "grpc_service.grpc.pb.h"
#include "server/grpc_wire.h"
#include "server/tensor_io.h"
#include "tessera/core/clock.h"
#include "tessera_admin.grpc.pb.h"

namespace tessera::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

grpc::Status ToGrpc(const Status& st) {
  if (st.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(GrpcCodeOf(st.code())), st.message());
}

ServerUnaryReactor* Done(CallbackServerContext* ctx, const Status& st) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(st));
  return r;
}

const std::string* Authorization(CallbackServerContext* ctx, std::string* storage) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return nullptr;
  storage->assign(it->second.data(), it->second.size());
  return storage;
}

Result<int64_t> ParseVersion(const std::string& s) {
  if (s.empty()) return int64_t{0};
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1)
    return Status::InvalidArgument("model version '" + s + "' is not a positive integer");
  return v;
}

Result<uint64_t> ParamUint(const inference::InferParameter& p, const std::string& what) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kUint64Param:
      return p.uint64_param();
    case inference::InferParameter::kInt64Param:
      if (p.int64_param() >= 0) return static_cast<uint64_t>(p.int64_param());
      break;
    default:
      break;
  }
  return Status::InvalidArgument(what + " must be a non-negative integer");
}

// Reads shared-memory parameters of a tensor; false when there are none.
Result<bool> ShmParams(const google::protobuf::Map<std::string, inference::InferParameter>& params,
                       const std::string& what, ShmRef* ref) {
  auto region = params.find("shared_memory_region");
  if (region == params.end()) return false;
  if (region->second.parameter_choice_case() != inference::InferParameter::kStringParam)
    return Status::InvalidArgument(what + ": shared_memory_region must be a string");
  ref->region = region->second.string_param();
  if (auto off = params.find("shared_memory_offset"); off != params.end()) {
    TESSERA_ASSIGN_OR_RETURN(ref->offset, ParamUint(off->second, what + ": shared_memory_offset"));
  }
  auto size = params.find("shared_memory_byte_size");
  if (size == params.end())
    return Status::InvalidArgument(
        what + ": shared_memory_byte_size is required with shared_memory_region");
  TESSERA_ASSIGN_OR_RETURN(ref->byte_size,
                           ParamUint(size->second, what + ": shared_memory_byte_size"));
  return true;
}

// Typed contents -> tensor.
template <typename T, typename Field>
Result<Tensor> FromTyped(const Field& field, const std::string& name, DataType dtype,
                         const Shape& shape) {
  TESSERA_ASSIGN_OR_RETURN(int64_t n, CheckShape(shape, name));
  if (static_cast<int64_t>(field.size()) != n)
    return Status::InvalidArgument("input '" + name + "': shape " + ShapeToString(shape) + " has " +
                                   std::to_string(n) + " elements, contents has " +
                                   std::to_string(field.size()));
  Tensor t = Tensor::Allocate(dtype, shape);
  T* dst = t.data<T>();
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(field[static_cast<int>(i)]);
  return t;
}

Result<Tensor> FromContents(const inference::InferTensorContents& c, const std::string& name,
                            DataType dtype, const Shape& shape) {
  switch (dtype) {
    case DataType::kBool:
      return FromTyped<uint8_t>(c.bool_contents(), name, dtype, shape);
    case DataType::kInt8:
      return FromTyped<int8_t>(c.int_contents(), name, dtype, shape);
    case DataType::kInt16:
      return FromTyped<int16_t>(c.int_contents(), name, dtype, shape);
    case DataType::kInt32:
      return FromTyped<int32_t>(c.int_contents(), name, dtype, shape);
    case DataType::kInt64:
      return FromTyped<int64_t>(c.int64_contents(), name, dtype, shape);
    case DataType::kUInt8:
      return FromTyped<uint8_t>(c.uint_contents(), name, dtype, shape);
    case DataType::kUInt16:
      return FromTyped<uint16_t>(c.uint_contents(), name, dtype, shape);
    case DataType::kUInt32:
      return FromTyped<uint32_t>(c.uint_contents(), name, dtype, shape);
    case DataType::kUInt64:
      return FromTyped<uint64_t>(c.uint64_contents(), name, dtype, shape);
    case DataType::kFloat32:
      return FromTyped<float>(c.fp32_contents(), name, dtype, shape);
    case DataType::kFloat64:
      return FromTyped<double>(c.fp64_contents(), name, dtype, shape);
    default:
      return Status::InvalidArgument("input '" + name + "': " + DataTypeName(dtype) +
                                     " data must come in raw_input_contents");
  }
}

struct GrpcInferOptions {
  std::vector<OutputRequest> outputs;
  bool timing = false;
};

// ModelInferRequest -> runtime request, with its raw_input_contents in `raw` (viewed, not
// copied: each entry's holder keeps it, or the caller does until the response is written).
Result<RequestPtr> ParseInfer(ServerContext& ctx, const inference::ModelInferRequest& req,
                              const std::vector<RawInput>& raw, GrpcInferOptions* opts) {
  auto r = std::make_unique<InferenceRequest>();
  r->model = req.model_name();
  TESSERA_ASSIGN_OR_RETURN(r->version, ParseVersion(req.model_version()));
  r->id = req.id();
  for (const auto& [k, v] : req.parameters()) {
    if (k == "priority") {
      TESSERA_ASSIGN_OR_RETURN(r->priority, ParamUint(v, "parameter priority"));
    } else if (k == "timeout") {
      TESSERA_ASSIGN_OR_RETURN(r->timeout_us, ParamUint(v, "parameter timeout (us)"));
    } else if (k == "tessera_timing") {
      opts->timing =
          v.parameter_choice_case() == inference::InferParameter::kBoolParam && v.bool_param();
    } else if (k == "sequence_id" || k == "sequence_start" || k == "sequence_end") {
      return Status::Unimplemented("parameter " + k +
                                   ": sequence batching is not supported by Tessera");
    }
  }
  if (req.inputs().empty()) return Status::InvalidArgument("the request has no inputs");
  int raw_index = 0;
  for (const auto& in : req.inputs()) {
    const std::string& name = in.name();
    TESSERA_ASSIGN_OR_RETURN(DataType dtype, ParseDatatype(in.datatype(), name));
    Shape shape(in.shape().begin(), in.shape().end());
    ShmRef ref;
    TESSERA_ASSIGN_OR_RETURN(bool shm, ShmParams(in.parameters(), "input '" + name + "'", &ref));
    Tensor t;
    if (shm) {
      TESSERA_ASSIGN_OR_RETURN(t, InputFromShm(ctx, name, dtype, shape, ref));
    } else if (!raw.empty()) {
      if (raw_index >= static_cast<int>(raw.size()))
        return Status::InvalidArgument("input '" + name +
                                       "' has no entry in raw_input_contents (one per input "
                                       "not in shared memory, in order)");
      const RawInput& in_raw = raw[raw_index++];
      TESSERA_ASSIGN_OR_RETURN(
          t, InputFromBytes(name, dtype, shape, in_raw.data, in_raw.bytes, in_raw.holder));
    } else if (in.has_contents()) {
      TESSERA_ASSIGN_OR_RETURN(t, FromContents(in.contents(), name, dtype, shape));
    } else {
      return Status::InvalidArgument("input '" + name +
                                     "' has no contents, raw_input_contents or shared memory");
    }
    r->input_names.push_back(name);
    r->inputs.push_back(std::move(t));
  }
  if (raw_index < static_cast<int>(raw.size()))
    return Status::InvalidArgument(std::to_string(raw.size() - raw_index) +
                                   " raw_input_contents entries belong to no input");
  for (const auto& o : req.outputs()) {
    OutputRequest out;
    out.name = o.name();
    if (o.parameters().count("classification"))
      return Status::Unimplemented("output '" + out.name +
                                   "': the classification extension is not supported");
    TESSERA_ASSIGN_OR_RETURN(out.shm,
                             ShmParams(o.parameters(), "output '" + out.name + "'", &out.shm_ref));
    if (out.shm) TESSERA_RETURN_IF_ERROR(ResolveShm(ctx, &out.shm_ref));
    for (const auto& prev : opts->outputs)
      if (prev.name == out.name)
        return Status::InvalidArgument("output '" + out.name + "' is requested twice");
    r->outputs.push_back(out.name);
    opts->outputs.push_back(std::move(out));
  }
  return r;
}

Status FillResponse(ServerContext& ctx, InferenceResponse&& resp, const GrpcInferOptions& opts,
                    inference::ModelInferResponse* out) {
  if (!resp.status.ok()) return resp.status;
  out->set_model_name(resp.model);
  out->set_model_version(std::to_string(resp.version));
  out->set_id(resp.id);
  if (opts.timing) {
    const RequestTiming& t = resp.timing;
    auto& p = *out->mutable_parameters();
    const int64_t built = SystemClock::Default()->NowNs();
    p["tessera_queue_ns"].set_int64_param(t.dispatch - t.enqueue);
    p["tessera_compute_input_ns"].set_int64_param(t.input_done - t.dispatch);
    p["tessera_compute_infer_ns"].set_int64_param(t.infer_done - t.input_done);
    p["tessera_compute_output_ns"].set_int64_param(t.output_done - t.infer_done);
    p["tessera_server_ns"].set_int64_param(built - t.arrive);  // arrival to response built
    p["tessera_batch_rows"].set_int64_param(resp.batch_rows);
    if (resp.gpu_sms > 0)
      p["tessera_gpu_sms"].set_int64_param(resp.gpu_sms);
    else
      p["tessera_compute_threads"].set_int64_param(resp.compute_threads);
  }
  for (size_t i = 0; i < resp.outputs.size(); ++i) {
    const std::string& name = resp.output_names[i];
    const Tensor& t = resp.outputs[i];
    auto* o = out->add_outputs();
    o->set_name(name);
    o->set_datatype(DataTypeName(t.dtype()));
    for (int64_t d : t.shape()) o->add_shape(d);
    const OutputRequest* req = nullptr;
    for (const auto& x : opts.outputs)
      if (x.name == name) req = &x;
    if (req && req->shm) {
      TESSERA_RETURN_IF_ERROR(OutputToShm(ctx, name, t, req->shm_ref));
      auto& p = *o->mutable_parameters();
      p["shared_memory_region"].set_string_param(req->shm_ref.region);
      p["shared_memory_offset"].set_uint64_param(req->shm_ref.offset);
      p["shared_memory_byte_size"].set_uint64_param(t.nbytes());
      continue;
    }
    out->add_raw_output_contents(static_cast<const char*>(t.raw()), t.nbytes());
  }
  return Status::OK();
}

// One ModelStreamInfer call: reads requests, runs them, writes each response as it completes
// (in completion order, as Triton does), finishes when the client is done and nothing is left.
class StreamReactor final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                           inference::ModelStreamInferResponse> {
 public:
  explicit StreamReactor(ServerContext* ctx) : ctx_(ctx) { StartRead(&incoming_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    auto req = std::make_shared<inference::ModelInferRequest>(std::move(incoming_));
    incoming_.Clear();
    const int64_t arrive = SystemClock::Default()->NowNs();
    auto opts = std::make_shared<GrpcInferOptions>();
    std::vector<RawInput> raw;  // the message's own strings (a stream's messages are parsed whole)
    for (const std::string& b : req->raw_input_contents()) raw.push_back({b.data(), b.size(), req});
    auto parsed = ParseInfer(*ctx_, *req, raw, opts.get());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++outstanding_;
    }
    if (!parsed.ok()) {
      Complete(parsed.status(), nullptr, req->id());
    } else {
      RequestPtr r = std::move(parsed).value();
      r->timing.arrive = arrive;
      ServerContext* ctx = ctx_;
      r->done = [this, ctx, opts, req](InferenceResponse&& resp) {
        auto out = std::make_unique<inference::ModelStreamInferResponse>();
        const std::string id = resp.id;
        Status st = FillResponse(*ctx, std::move(resp), *opts, out->mutable_infer_response());
        Complete(st, std::move(out), id);
      };
      ctx_->manager().Infer(std::move(r));
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) broken_ = true;
    pending_.pop_front();
    WriteNextLocked();
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Complete(const Status& st, std::unique_ptr<inference::ModelStreamInferResponse> out,
                const std::string& id) {
    if (!out) out = std::make_unique<inference::ModelStreamInferResponse>();
    if (!st.ok()) {
      out->Clear();
      out->set_error_message(st.message());
      out->mutable_infer_response()->set_id(id);
    }
    std::lock_guard<std::mutex> lock(mu_);
    --outstanding_;
    pending_.push_back(std::move(out));
    WriteNextLocked();
    MaybeFinishLocked();
  }
  void WriteNextLocked() {
    if (writing_ || pending_.empty() || broken_) {
      if (broken_) pending_.clear();
      return;
    }
    writing_ = true;
    StartWrite(pending_.front().get());
  }
  void MaybeFinishLocked() {
    if (reads_done_ && outstanding_ == 0 && pending_.empty() && !writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  ServerContext* ctx_;
  inference::ModelInferRequest incoming_;
  std::mutex mu_;
  std::deque<std::unique_ptr<inference::ModelStreamInferResponse>> pending_;
  int outstanding_ = 0;
  bool writing_ = false, reads_done_ = false, finished_ = false, broken_ = false;
};

}  // namespace

class GrpcService final : public inference::GRPCInferenceService::WithRawCallbackMethod_ModelInfer<
                              inference::GRPCInferenceService::CallbackService> {
 public:
  explicit GrpcService(ServerContext* ctx) : ctx_(ctx) {}

  ServerUnaryReactor* ServerLive(CallbackServerContext* c, const inference::ServerLiveRequest*,
                                 inference::ServerLiveResponse* out) override {
    out->set_live(ctx_->Live());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ServerReady(CallbackServerContext* c, const inference::ServerReadyRequest*,
                                  inference::ServerReadyResponse* out) override {
    out->set_ready(ctx_->Ready());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ModelReady(CallbackServerContext* c, const inference::ModelReadyRequest* in,
                                 inference::ModelReadyResponse* out) override {
    auto v = ParseVersion(in->version());
    if (!v.ok()) return Done(c, v.status());
    auto m = ctx_->manager().Get(in->name(), *v);
    out->set_ready(m.ok() && (*m)->ready());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ServerMetadata(CallbackServerContext* c,
                                     const inference::ServerMetadataRequest*,
                                     inference::ServerMetadataResponse* out) override {
    out->set_name("tessera");
    out->set_version("0.1.0");
    for (const auto& e : ctx_->Extensions()) out->add_extensions(e);
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ModelMetadata(CallbackServerContext* c,
                                    const inference::ModelMetadataRequest* in,
                                    inference::ModelMetadataResponse* out) override {
    auto v = ParseVersion(in->version());
    if (!v.ok()) return Done(c, v.status());
    auto m = ctx_->manager().Get(in->name(), *v);
    if (!m.ok()) return Done(c, m.status());
    const tessera::ModelConfig& cfg = (*m)->config();
    out->set_name(cfg.name);
    for (int64_t ver : ctx_->manager().ReadyVersions(cfg.name))
      out->add_versions(std::to_string(ver));
    out->set_platform(cfg.platform.empty() ? "onnxruntime_onnx" : cfg.platform);
    const bool batched = cfg.max_batch_size > 0;
    auto fill = [&](const TensorConfig& t, inference::ModelMetadataResponse::TensorMetadata* x) {
      x->set_name(t.name);
      x->set_datatype(DataTypeName(t.dtype));
      if (batched) x->add_shape(-1);
      for (int64_t d : t.dims) x->add_shape(d);
    };
    for (const auto& t : cfg.inputs) fill(t, out->add_inputs());
    for (const auto& t : cfg.outputs) fill(t, out->add_outputs());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ModelConfig(CallbackServerContext* c, const inference::ModelConfigRequest* in,
                                  inference::ModelConfigResponse* out) override {
    auto v = ParseVersion(in->version());
    if (!v.ok()) return Done(c, v.status());
    auto m = ctx_->manager().Get(in->name(), *v);
    if (!m.ok()) return Done(c, m.status());
    out->mutable_config()->ParseFromString(ModelConfigProtoBytes((*m)->config()));
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* ModelStatistics(CallbackServerContext* c,
                                      const inference::ModelStatisticsRequest* in,
                                      inference::ModelStatisticsResponse* out) override {
    auto v = ParseVersion(in->version());
    if (!v.ok()) return Done(c, v.status());
    auto snaps = ctx_->manager().Stats(in->name(), *v);
    if (!snaps.ok()) return Done(c, snaps.status());
    auto dur = [](const DurationStat& d, inference::StatisticDuration* x) {
      x->set_count(d.count);
      x->set_ns(d.ns);
    };
    for (const auto& s : *snaps) {
      auto* m = out->add_model_stats();
      m->set_name(s.name);
      m->set_version(std::to_string(s.version));
      m->set_last_inference(s.last_inference_ms);
      m->set_inference_count(s.inference_count);
      m->set_execution_count(s.execution_count);
      auto* is = m->mutable_inference_stats();
      dur(s.success, is->mutable_success());
      dur(s.fail, is->mutable_fail());
      dur(s.queue, is->mutable_queue());
      dur(s.compute_input, is->mutable_compute_input());
      dur(s.compute_infer, is->mutable_compute_infer());
      dur(s.compute_output, is->mutable_compute_output());
      auto* mem = m->add_memory_usage();
      mem->set_type("CPU");
      mem->set_id(0);
      mem->set_byte_size(s.memory_bytes);
      for (const auto& b : s.batch_stats) {
        auto* bs = m->add_batch_stats();
        bs->set_batch_size(b.batch_size);
        dur(b.compute_input, bs->mutable_compute_input());
        dur(b.compute_infer, bs->mutable_compute_infer());
        dur(b.compute_output, bs->mutable_compute_output());
      }
    }
    return Done(c, Status::OK());
  }

  // Raw: the request's tensor bytes go from gRPC's receive slices straight into body memory
  // (pinned on a sliced GPU; grpc_wire.h); the response is serialized here.
  ServerUnaryReactor* ModelInfer(CallbackServerContext* c, const grpc::ByteBuffer* in,
                                 grpc::ByteBuffer* out) override {
    const int64_t arrive = SystemClock::Default()->NowNs();
    auto wire = ReadInferRequest(*in);
    if (!wire.ok()) return Done(c, wire.status());
    auto opts = std::make_shared<GrpcInferOptions>();
    auto parsed = ParseInfer(*ctx_, wire->meta, wire->raw, opts.get());
    if (!parsed.ok()) return Done(c, parsed.status());
    auto* reactor = c->DefaultReactor();
    RequestPtr r = std::move(parsed).value();
    r->timing.arrive = arrive;
    ServerContext* ctx = ctx_;
    r->done = [reactor, ctx, opts, out](InferenceResponse&& resp) {
      inference::ModelInferResponse msg;
      Status st = FillResponse(*ctx, std::move(resp), *opts, &msg);
      if (st.ok()) {
        bool own = false;
        const grpc::Status ser =
            grpc::SerializationTraits<inference::ModelInferResponse>::Serialize(msg, out, &own);
        if (!ser.ok()) st = Status::Internal("serializing the response: " + ser.error_message());
      }
      reactor->Finish(ToGrpc(st));
    };
    ctx_->manager().Infer(std::move(r));
    return reactor;
  }

  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(CallbackServerContext*) override {
    return new StreamReactor(ctx_);
  }

  ServerUnaryReactor* RepositoryIndex(CallbackServerContext* c,
                                      const inference::RepositoryIndexRequest* in,
                                      inference::RepositoryIndexResponse* out) override {
    for (const auto& e : ctx_->manager().Index()) {
      if (in->ready() && e.state != ModelState::kReady) continue;
      auto* m = out->add_models();
      m->set_name(e.name);
      if (e.version > 0) m->set_version(std::to_string(e.version));
      m->set_state(ModelStateName(e.state));
      m->set_reason(e.reason);
    }
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* RepositoryModelLoad(CallbackServerContext* c,
                                          const inference::RepositoryModelLoadRequest* in,
                                          inference::RepositoryModelLoadResponse*) override {
    return Repository(c, in->model_name(), true, in->parameters().count("config") > 0);
  }
  ServerUnaryReactor* RepositoryModelUnload(CallbackServerContext* c,
                                            const inference::RepositoryModelUnloadRequest* in,
                                            inference::RepositoryModelUnloadResponse*) override {
    return Repository(c, in->model_name(), false, false);
  }

  ServerUnaryReactor* SystemSharedMemoryStatus(
      CallbackServerContext* c, const inference::SystemSharedMemoryStatusRequest* in,
      inference::SystemSharedMemoryStatusResponse* out) override {
    auto s = ctx_->system_shm().Status(in->name());
    if (!s.ok()) return Done(c, s.status());
    for (const auto& r : *s) {
      auto& x = (*out->mutable_regions())[r.name];
      x.set_name(r.name);
      x.set_key(r.key);
      x.set_offset(r.offset);
      x.set_byte_size(r.byte_size);
    }
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* SystemSharedMemoryRegister(
      CallbackServerContext* c, const inference::SystemSharedMemoryRegisterRequest* in,
      inference::SystemSharedMemoryRegisterResponse*) override {
    Status auth = Admin(c);
    if (!auth.ok()) return Done(c, auth);
    return Done(c,
                ctx_->system_shm().Register(in->name(), in->key(), in->offset(), in->byte_size()));
  }
  ServerUnaryReactor* SystemSharedMemoryUnregister(
      CallbackServerContext* c, const inference::SystemSharedMemoryUnregisterRequest* in,
      inference::SystemSharedMemoryUnregisterResponse*) override {
    Status auth = Admin(c);
    if (!auth.ok()) return Done(c, auth);
    ctx_->system_shm().Unregister(in->name());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* CudaSharedMemoryStatus(
      CallbackServerContext* c, const inference::CudaSharedMemoryStatusRequest* in,
      inference::CudaSharedMemoryStatusResponse* out) override {
    auto s = ctx_->cuda_shm().Status(in->name());
    if (!s.ok()) return Done(c, s.status());
    for (const auto& r : *s) {
      auto& x = (*out->mutable_regions())[r.name];
      x.set_name(r.name);
      x.set_device_id(static_cast<uint64_t>(r.device_id));
      x.set_byte_size(r.byte_size);
    }
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* CudaSharedMemoryRegister(
      CallbackServerContext* c, const inference::CudaSharedMemoryRegisterRequest* in,
      inference::CudaSharedMemoryRegisterResponse*) override {
    Status auth = Admin(c);
    if (!auth.ok()) return Done(c, auth);
    return Done(c, ctx_->cuda_shm().Register(in->name(), in->raw_handle(), in->device_id(),
                                             in->byte_size()));
  }
  ServerUnaryReactor* CudaSharedMemoryUnregister(
      CallbackServerContext* c, const inference::CudaSharedMemoryUnregisterRequest* in,
      inference::CudaSharedMemoryUnregisterResponse*) override {
    Status auth = Admin(c);
    if (!auth.ok()) return Done(c, auth);
    ctx_->cuda_shm().Unregister(in->name());
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* TraceSetting(CallbackServerContext* c, const inference::TraceSettingRequest*,
                                   inference::TraceSettingResponse*) override {
    return Done(c, Status::Unimplemented("the trace extension is not supported"));
  }
  ServerUnaryReactor* LogSettings(CallbackServerContext* c, const inference::LogSettingsRequest* in,
                                  inference::LogSettingsResponse* out) override {
    if (!in->settings().empty()) {
      Status auth = Admin(c);
      if (!auth.ok()) return Done(c, auth);
      ServerContext::LogSettings s = ctx_->log_settings();
      for (const auto& [k, v] : in->settings()) {
        using V = inference::LogSettingsRequest::SettingValue;
        const bool b = v.parameter_choice_case() == V::kBoolParam;
        if (k == "log_info" && b)
          s.info = v.bool_param();
        else if (k == "log_warning" && b)
          s.warning = v.bool_param();
        else if (k == "log_error" && b)
          s.error = v.bool_param();
        else if (k == "log_verbose_level" && v.parameter_choice_case() == V::kUint32Param)
          s.verbose_level = v.uint32_param();
        else if (k == "log_format" && v.parameter_choice_case() == V::kStringParam)
          s.format = v.string_param();
        else
          return Done(c, Status::InvalidArgument("unknown or mistyped log setting '" + k + "'"));
      }
      Status st = ctx_->SetLogSettings(s);
      if (!st.ok()) return Done(c, st);
    }
    const auto s = ctx_->log_settings();
    auto& m = *out->mutable_settings();
    m["log_info"].set_bool_param(s.info);
    m["log_warning"].set_bool_param(s.warning);
    m["log_error"].set_bool_param(s.error);
    m["log_verbose_level"].set_uint32_param(s.verbose_level);
    m["log_format"].set_string_param(s.format);
    m["log_file"].set_string_param("");
    return Done(c, Status::OK());
  }

 private:
  Status Admin(CallbackServerContext* c) {
    std::string storage;
    return ctx_->CheckAdmin(Authorization(c, &storage));
  }
  ServerUnaryReactor* Repository(CallbackServerContext* c, const std::string& model, bool load,
                                 bool override_config) {
    Status auth = Admin(c);
    if (!auth.ok()) return Done(c, auth);
    if (ctx_->manager().options().mode != ModelControlMode::kExplicit)
      return Done(c, Status::FailedPrecondition(
                         "repository load/unload needs --model-control-mode=explicit"));
    if (override_config)
      return Done(c, Status::Unimplemented(
                         "loading with an override config is not supported; edit config.pbtxt"));
    auto* reactor = c->DefaultReactor();
    ServerContext* ctx = ctx_;
    ctx_->RunAdmin([ctx, model, load, reactor] {
      Status st = load ? ctx->manager().Load(model) : ctx->manager().Unload(model);
      reactor->Finish(ToGrpc(st));
    });
    return reactor;
  }

  ServerContext* ctx_;
};

// tessera.admin.Admin (proto/tessera_admin.proto).
class AdminService final : public tessera::admin::Admin::CallbackService {
 public:
  explicit AdminService(ServerContext* ctx) : ctx_(ctx) {}

  ServerUnaryReactor* GetSlice(CallbackServerContext* c, const tessera::admin::GetSliceRequest* in,
                               tessera::admin::SliceResponse* out) override {
    auto st = ctx_->manager().Slice(in->model_name());
    if (!st.ok()) return Done(c, st.status());
    Fill(*st, out);
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* SetSlice(CallbackServerContext* c, const tessera::admin::SetSliceRequest* in,
                               tessera::admin::SliceResponse* out) override {
    std::string storage;
    Status auth = ctx_->CheckAdmin(Authorization(c, &storage));
    if (!auth.ok()) return Done(c, auth);
    const bool size = in->size_case() != tessera::admin::SetSliceRequest::SIZE_NOT_SET;
    if (!size && !in->has_max_batch())
      return Done(c, Status::InvalidArgument(
                         "SetSlice needs threads (CPU models) or sms (GPU models), and / or "
                         "max_batch"));
    SliceChange change;
    if (in->size_case() == tessera::admin::SetSliceRequest::kSms) change.sms = in->sms();
    if (in->size_case() == tessera::admin::SetSliceRequest::kThreads)
      change.threads = in->threads();
    if (in->has_max_batch()) change.max_batch = in->max_batch();
    auto st = ctx_->manager().ChangeSlice(in->model_name(), change);
    if (!st.ok()) return Done(c, st.status());
    Fill(*st, out);
    return Done(c, Status::OK());
  }
  ServerUnaryReactor* AddInstance(CallbackServerContext* c,
                                  const tessera::admin::AddInstanceRequest* in,
                                  tessera::admin::SliceResponse* out) override {
    InstanceChange change;
    change.size = in->size();
    if (in->has_gpu()) change.gpu = in->gpu();
    if (in->has_max_batch()) change.max_batch = in->max_batch();
    return Admin(c, out, [&] { return ctx_->manager().AddInstance(in->model_name(), change); });
  }
  ServerUnaryReactor* RemoveInstance(CallbackServerContext* c,
                                     const tessera::admin::RemoveInstanceRequest* in,
                                     tessera::admin::SliceResponse* out) override {
    return Admin(c, out,
                 [&] { return ctx_->manager().RemoveInstance(in->model_name(), in->index()); });
  }
  ServerUnaryReactor* ChangeInstance(CallbackServerContext* c,
                                     const tessera::admin::ChangeInstanceRequest* in,
                                     tessera::admin::SliceResponse* out) override {
    InstanceChange change;
    if (in->has_size()) change.size = in->size();
    if (in->has_max_batch()) change.max_batch = in->max_batch();
    return Admin(c, out, [&] {
      return ctx_->manager().ChangeInstance(in->model_name(), in->index(), change);
    });
  }

 private:
  // An admin call: the token checked, then `change` run and its slice filled in.
  template <typename F>
  ServerUnaryReactor* Admin(CallbackServerContext* c, tessera::admin::SliceResponse* out,
                            F change) {
    std::string storage;
    Status auth = ctx_->CheckAdmin(Authorization(c, &storage));
    if (!auth.ok()) return Done(c, auth);
    Result<SliceState> st = change();
    if (!st.ok()) return Done(c, st.status());
    Fill(*st, out);
    return Done(c, Status::OK());
  }
  static void Fill(const SliceState& s, tessera::admin::SliceResponse* out) {
    out->set_model_name(s.model);
    out->set_engine(s.engine);
    out->set_threads(s.threads);
    out->set_instances(s.instances);
    for (int64_t v : s.versions) out->add_versions(v);
    out->set_gpu(s.gpu);
    out->set_sms(s.sms);
    out->set_gpu_sms(s.gpu_sms);
    out->set_confined(s.confined);
    out->set_sharing(s.sharing);
    out->set_resize_ms(s.resize_ms);
    out->set_resize_gap_us(s.resize_gap_us);
    out->set_max_batch(s.max_batch);
    out->set_config_max_batch(s.config_max_batch);
    for (const InstanceSlice& i : s.instance_slices) {
      auto* o = out->add_instance_slices();
      o->set_index(i.index);
      o->set_gpu(i.gpu);
      o->set_sms(i.sms);
      o->set_confined(i.confined);
      o->set_threads(i.threads);
      o->set_max_batch(i.max_batch);
      o->set_batches(i.batches);
      o->set_rows(i.rows);
    }
  }
  ServerContext* ctx_;
};

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(ServerContext* ctx,
                                                      const std::string& address, int port) {
  std::unique_ptr<GrpcServer> s(new GrpcServer());
  s->service_ = std::make_unique<GrpcService>(ctx);
  grpc::ServerBuilder b;
  const bool v6 = address.find(':') != std::string::npos;
  const std::string target = (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
  b.AddListeningPort(target, grpc::InsecureServerCredentials(), &s->port_);
  b.RegisterService(s->service_.get());
  s->admin_ = std::make_unique<AdminService>(ctx);
  b.RegisterService(s->admin_.get());
  const int max = static_cast<int>(
      std::min<size_t>(ctx->options().max_request_bytes, std::numeric_limits<int>::max()));
  b.SetMaxReceiveMessageSize(max);
  b.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  s->server_ = b.BuildAndStart();
  if (!s->server_ || s->port_ == 0)
    return Status::Unavailable("cannot listen for gRPC on " + target + " (is the port in use?)");
  return s;
}

void GrpcServer::Shutdown(int64_t deadline_ms) {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  server_->Wait();
  server_.reset();
}

GrpcServer::~GrpcServer() { Shutdown(0); }

}  // namespace tessera::server
