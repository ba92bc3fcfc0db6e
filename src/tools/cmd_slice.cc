// `tessera slice get|set MODEL [N]`: a running server's model slices, through its admin API
// (HTTP: GET / POST /v2/models/MODEL/slice; gRPC: tessera.admin.Admin). On the CPU engine a
// slice is the compute threads each instance runs a batch with; the change applies at the next
// batch boundary.
#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "bench/transport.h"
#include "tessera_admin.grpc.pb.h"
#include "tools/commands.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string url, token, model, protocol = "http";
  int size = 0;
};

std::string Token(const Opts& o) {
  if (!o.token.empty()) return o.token;
  const char* t = std::getenv("TESSERA_ADMIN_TOKEN");
  return t ? t : "";
}

int Print(const std::string& model, const std::string& engine, int threads, int instances) {
  fmt::print("model {}: {} engine, {} compute thread(s) per instance, {} instance(s)\n", model,
             engine, threads, instances);
  return 0;
}

int CallGrpc(const Opts& o, bool set) {
  auto stub = tessera::admin::Admin::NewStub(
      grpc::CreateChannel(o.url, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (const std::string t = Token(o); !t.empty()) ctx.AddMetadata("authorization", "Bearer " + t);
  tessera::admin::SliceResponse out;
  grpc::Status st;
  if (set) {
    tessera::admin::SetSliceRequest in;
    in.set_model_name(o.model);
    in.set_threads(o.size);
    st = stub->SetSlice(&ctx, in, &out);
  } else {
    tessera::admin::GetSliceRequest in;
    in.set_model_name(o.model);
    st = stub->GetSlice(&ctx, in, &out);
  }
  if (!st.ok()) {
    fmt::print(stderr, "error: gRPC {}: {}\n", static_cast<int>(st.error_code()),
               st.error_message());
    return st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
  }
  return Print(out.model_name(), out.engine(), out.threads(), out.instances());
}

int Call(const Opts& o, const std::string& method, const std::string& body) {
  const std::string token = Token(o);
  auto r = bench::HttpRequest(o.url, method, "/v2/models/" + o.model + "/slice", body,
                              token.empty() ? "" : "Bearer " + token);
  if (!r.ok()) {
    fmt::print(stderr, "error: {}\n", r.status().ToString());
    return 1;
  }
  const auto j = nlohmann::json::parse(r->second, nullptr, false);
  if (r->first != 200) {
    const std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                ? j["error"].get<std::string>()
                                : r->second;
    fmt::print(stderr, "error: HTTP {}: {}\n", r->first, msg);
    return r->first == 400 ? 2 : 1;
  }
  if (!j.is_object()) {
    fmt::print(stderr, "error: the server's answer is not JSON: {}\n", r->second);
    return 1;
  }
  return Print(j.value("name", o.model), j.value("engine", "?"), j.value("threads", 0),
               j.value("instances", 0));
}

}  // namespace

Runner SetupSlice(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.require_subcommand(1);
  app.add_option("--url", o->url,
                 "The server's address, host:port (default: localhost:8000 for HTTP, "
                 "localhost:8001 for gRPC)");
  app.add_option("--protocol", o->protocol, "http or grpc")
      ->default_val("http")
      ->check(CLI::IsMember({"http", "grpc"}));
  app.add_option("--admin-token", o->token,
                 "Bearer token of the server's admin API (default: $TESSERA_ADMIN_TOKEN)");
  auto* get = app.add_subcommand("get", "Show a model's slice");
  get->add_option("model", o->model, "Model name")->required();
  auto* set = app.add_subcommand("set", "Change a model's slice live (admin)");
  set->add_option("model", o->model, "Model name")->required();
  set->add_option("size", o->size, "CPU: compute threads per instance")
      ->required()
      ->check(CLI::PositiveNumber);
  return [o, get, set] {
    if (o->url.empty()) o->url = o->protocol == "grpc" ? "localhost:8001" : "localhost:8000";
    if (o->protocol == "grpc") return CallGrpc(*o, set->parsed());
    if (get->parsed()) return Call(*o, "GET", "");
    if (set->parsed()) return Call(*o, "POST", nlohmann::json{{"threads", o->size}}.dump());
    return 2;
  };
}

}  // namespace tessera::cli
