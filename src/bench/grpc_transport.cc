// gRPC transport: asynchronous unary ModelInfer calls on one channel; the scheduling thread
// starts each call when due, completion-queue threads record the answers.
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "bench/transport.h"
#include "grpc_service.grpc.pb.h"

namespace tessera::bench {
namespace {

std::string CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "CODE_" + std::to_string(static_cast<int>(c));
  }
}

Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  const std::string m = what + ": " + CodeName(s.error_code()) + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::NOT_FOUND:
      return Status::NotFound(m);
    case grpc::StatusCode::UNAVAILABLE:
      return Status::Unavailable(m);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Status::InvalidArgument(m);
    default:
      return Status::Internal(m);
  }
}

struct Call {
  grpc::ClientContext ctx;
  inference::ModelInferResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<inference::ModelInferResponse>> rpc;
  int model = 0;
  int64_t due_ns = 0;
  bool cancelled = false;  // by the drain timeout (guarded by GrpcTransport::mu_)
};

// One ModelStreamInfer stream carrying every request: the sending thread queues requests,
// gRPC's callback threads write them one at a time (the API allows one write in flight) and
// match responses to requests by id. Cheaper per request than a unary call each.
class InferStream final : public grpc::ClientBidiReactor<inference::ModelInferRequest,
                                                         inference::ModelStreamInferResponse> {
 public:
  InferStream(inference::GRPCInferenceService::Stub* stub,
              std::vector<inference::ModelInferRequest>* requests, Recorder* rec, int64_t t0_ns)
      : requests_(requests), rec_(rec), t0_ns_(t0_ns) {
    stub->async()->ModelStreamInfer(&ctx_, this);
    StartRead(&response_);
    StartCall();
  }

  // Sending thread: queue one request of `model`, due at `due_ns`.
  void Send(int model, int64_t due_ns) {
    std::lock_guard<std::mutex> l(mu_);
    const uint64_t id = next_id_++;
    inflight_[id] = {model, due_ns};
    queue_.push_back({model, id});
    if (!writing_) WriteNextLocked();
  }

  // After the last Send: waits up to drain_ns for the answers, cancels the stream if some are
  // missing (recorded as no_response), and returns when the stream is over.
  void Drain(int64_t drain_ns) {
    std::unique_lock<std::mutex> l(mu_);
    closing_ = true;
    if (!writing_) WriteNextLocked();
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(drain_ns);
    cv_.wait_until(l, until, [&] { return done_ || inflight_.empty(); });
    if (!inflight_.empty()) ctx_.TryCancel();
    cv_.wait(l, [&] { return done_; });
    const int64_t now = MonotonicNs() - t0_ns_;
    for (const auto& [id, slot] : inflight_) {
      Outcome o;
      o.ok = false;
      o.kind = "no_response";
      o.message = status_.ok() ? "no answer before the drain timeout"
                               : "stream ended: " + status_.error_message();
      rec_->Done(slot.first, slot.second, now, o);
    }
    inflight_.clear();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    if (!ok) {
      broken_ = true;  // the stream is over; OnDone follows
      return;
    }
    WriteNextLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // no more responses; OnDone follows
    const int64_t now = MonotonicNs() - t0_ns_;
    const auto& r = response_.infer_response();
    std::pair<int, int64_t> slot{-1, 0};
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = inflight_.find(std::strtoull(r.id().c_str(), nullptr, 10));
      if (it != inflight_.end()) {
        slot = it->second;
        inflight_.erase(it);
      }
      if (inflight_.empty()) cv_.notify_all();
    }
    if (slot.first >= 0) {
      Outcome o;
      if (!response_.error_message().empty()) {
        o.ok = false;
        o.kind = "stream_error";
        o.message = response_.error_message();
      }
      rec_->Done(slot.first, slot.second, now, o);
    }
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> l(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }

 private:
  void WriteNextLocked() {
    if (broken_) return;
    if (queue_.empty()) {
      if (closing_ && !writes_done_) {
        writes_done_ = true;
        StartWritesDone();
      }
      return;
    }
    const auto [model, id] = queue_.front();
    queue_.pop_front();
    // Only one write is in flight, so the model's prepared message can carry this id until
    // OnWriteDone.
    auto& req = (*requests_)[model];
    req.set_id(std::to_string(id));
    writing_ = true;
    StartWrite(&req);
  }

  grpc::ClientContext ctx_;
  std::vector<inference::ModelInferRequest>* requests_;
  Recorder* rec_;
  int64_t t0_ns_;
  inference::ModelStreamInferResponse response_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, uint64_t>> queue_;
  std::unordered_map<uint64_t, std::pair<int, int64_t>> inflight_;  // id -> (model, due)
  uint64_t next_id_ = 1;
  bool writing_ = false, closing_ = false, writes_done_ = false, broken_ = false, done_ = false;
  grpc::Status status_;
};

class GrpcTransport final : public Transport {
 public:
  GrpcTransport(const std::string& url, int threads, int64_t spin_ns, bool stream)
      : threads_(std::max(1, threads)), spin_ns_(spin_ns), stream_(stream) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    channel_ = grpc::CreateCustomChannel(url, grpc::InsecureChannelCredentials(), args);
    stub_ = inference::GRPCInferenceService::NewStub(channel_);
  }

  Result<ModelMeta> Metadata(const std::string& model, const std::string& version) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ModelMetadataRequest req;
    req.set_name(model);
    req.set_version(version);
    inference::ModelMetadataResponse resp;
    auto st = FromGrpc(stub_->ModelMetadata(&ctx, req, &resp), "metadata of model '" + model + "'");
    if (!st.ok()) return st;
    ModelMeta m;
    auto copy = [](const auto& from, std::vector<TensorMeta>* to) {
      for (const auto& t : from)
        to->push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
    };
    copy(resp.inputs(), &m.inputs);
    copy(resp.outputs(), &m.outputs);
    return m;
  }

  Status RegisterShm(const std::string& region, const std::string& key, uint64_t bytes) override {
    grpc::ClientContext ctx;
    inference::SystemSharedMemoryRegisterRequest req;
    req.set_name(region);
    req.set_key(key);
    req.set_byte_size(bytes);
    inference::SystemSharedMemoryRegisterResponse resp;
    return FromGrpc(stub_->SystemSharedMemoryRegister(&ctx, req, &resp),
                    "registering shared memory '" + region + "'");
  }

  Status UnregisterShm(const std::string& region) override {
    grpc::ClientContext ctx;
    inference::SystemSharedMemoryUnregisterRequest req;
    req.set_name(region);
    inference::SystemSharedMemoryUnregisterResponse resp;
    return FromGrpc(stub_->SystemSharedMemoryUnregister(&ctx, req, &resp),
                    "unregistering shared memory '" + region + "'");
  }

  Status Prepare(const std::vector<PreparedModel>& models) override {
    requests_.clear();
    for (const auto& m : models) {
      inference::ModelInferRequest r;
      r.set_model_name(m.name);
      r.set_model_version(m.version);
      if (m.priority > 0) (*r.mutable_parameters())["priority"].set_uint64_param(m.priority);
      for (const auto& in : m.inputs) {
        auto* t = r.add_inputs();
        t->set_name(in.name);
        t->set_datatype(in.datatype);
        for (auto d : in.shape) t->add_shape(d);
        if (!m.shm_region.empty()) {
          auto& p = *t->mutable_parameters();
          p["shared_memory_region"].set_string_param(m.shm_region);
          p["shared_memory_offset"].set_uint64_param(in.shm_offset);
          p["shared_memory_byte_size"].set_uint64_param(in.data.size());
        } else {
          r.add_raw_input_contents(in.data);
        }
      }
      requests_.push_back(std::move(r));
    }
    return Status::OK();
  }

  void Run(Scheduler& sched, Recorder& rec, int64_t t0_ns, int64_t drain_ns) override {
    if (stream_) {
      InferStream stream(stub_.get(), &requests_, &rec, t0_ns);
      UsePreciseTimers();
      while (sched.PeekNs() >= 0) {
        SleepUntilNs(t0_ns + sched.PeekNs(), spin_ns_);
        const auto [model, due] = sched.Pop();
        rec.Sent(model, due, MonotonicNs() - t0_ns);
        stream.Send(model, due);
      }
      stream.Drain(drain_ns);
      return;
    }
    // The sending thread sleeps until each due time; --grpc-threads threads reap completions.
    // (Reaping on the sending thread with CompletionQueue::AsyncNext was tried: its deadline
    // wakes up about a millisecond late, which delayed sends.)
    grpc::CompletionQueue cq;
    auto complete = [&](void* tag) {
      auto* c = static_cast<Call*>(tag);
      const int64_t done = MonotonicNs() - t0_ns;
      bool cancelled = false;
      {
        std::lock_guard<std::mutex> l(mu_);
        cancelled = c->cancelled;
        live_.erase(c);
      }
      Outcome o;
      if (!c->status.ok()) {
        o.ok = false;
        o.kind = cancelled ? "no_response" : "grpc_" + CodeName(c->status.error_code());
        o.message = cancelled ? "no answer before the drain timeout" : c->status.error_message();
      }
      rec.Done(c->model, c->due_ns, done, o);
      delete c;
    };
    std::vector<std::thread> reapers;
    for (int i = 0; i < threads_; ++i)
      reapers.emplace_back([&] {
        void* tag = nullptr;
        bool ok = false;
        while (cq.Next(&tag, &ok)) complete(tag);
      });
    UsePreciseTimers();
    while (sched.PeekNs() >= 0) {
      SleepUntilNs(t0_ns + sched.PeekNs(), spin_ns_);
      const auto [model, due] = sched.Pop();
      auto* c = new Call;
      c->model = model;
      c->due_ns = due;
      {
        std::lock_guard<std::mutex> l(mu_);
        live_.insert(c);
      }
      rec.Sent(model, due, MonotonicNs() - t0_ns);
      c->rpc = stub_->PrepareAsyncModelInfer(&c->ctx, requests_[model], &cq);
      c->rpc->StartCall();
      c->rpc->Finish(&c->response, &c->status, c);
    }
    // Drain: reap the answers, then cancel what is left (recorded as no_response).
    const int64_t deadline = MonotonicNs() + drain_ns;
    auto live = [&] {
      std::lock_guard<std::mutex> l(mu_);
      return live_.size();
    };
    while (live() > 0 && MonotonicNs() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto* c : live_) {
        c->cancelled = true;
        c->ctx.TryCancel();
      }
    }
    while (live() > 0)  // cancelled calls complete too
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    cq.Shutdown();
    for (auto& t : reapers) t.join();
  }

 private:
  int threads_;
  int64_t spin_ns_;
  bool stream_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  std::vector<inference::ModelInferRequest> requests_;
  std::mutex mu_;
  std::unordered_set<Call*> live_;
};

}  // namespace

std::unique_ptr<Transport> MakeGrpcTransport(const std::string& url, int threads, int64_t spin_ns,
                                             bool stream) {
  return std::make_unique<GrpcTransport>(url, threads, spin_ns, stream);
}

}  // namespace tessera::bench
