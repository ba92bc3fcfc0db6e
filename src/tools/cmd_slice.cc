// `tessera slice get|set MODEL [N]`: a running server's model slices, through its admin API
// (GET / POST /v2/models/MODEL/slice). On the CPU engine a slice is the compute threads each
// instance runs a batch with; the change applies at the next batch boundary.
#include <fmt/core.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "bench/transport.h"
#include "tools/commands.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string url = "localhost:8000", token, model;
  int size = 0;
};

int Call(const Opts& o, const std::string& method, const std::string& body) {
  std::string token = o.token;
  if (token.empty())
    if (const char* t = std::getenv("TESSERA_ADMIN_TOKEN")) token = t;
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
  fmt::print("model {}: {} engine, {} compute thread(s) per instance, {} instance(s)\n",
             j.value("name", o.model), j.value("engine", "?"), j.value("threads", 0),
             j.value("instances", 0));
  return 0;
}

}  // namespace

Runner SetupSlice(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.require_subcommand(1);
  app.add_option("--url", o->url, "The server's HTTP address (host:port)")
      ->default_val("localhost:8000");
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
    if (get->parsed()) return Call(*o, "GET", "");
    if (set->parsed()) return Call(*o, "POST", nlohmann::json{{"threads", o->size}}.dump());
    return 2;
  };
}

}  // namespace tessera::cli
