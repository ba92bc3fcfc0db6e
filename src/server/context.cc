#include "server/context.h"

#include <spdlog/spdlog.h>

namespace tessera::server {

ServerContext::ServerContext(ModelManager* manager, ServerOptions options)
    : manager_(manager), opts_(std::move(options)) {
  if (opts_.pin_system_shm) system_shm_.set_pinner(&CudaShmRegistry::PinHost);
  admin_thread_ = std::thread([this] { AdminLoop(); });
}

ServerContext::~ServerContext() {
  {
    std::lock_guard<std::mutex> lock(admin_mu_);
    admin_stop_ = true;
  }
  admin_cv_.notify_all();
  if (admin_thread_.joinable()) admin_thread_.join();
}

Status ServerContext::CheckAdmin(const std::string* authorization) const {
  if (opts_.admin_token.empty()) return Status::OK();
  const std::string want = "Bearer " + opts_.admin_token;
  if (!authorization)
    return Status::Unauthenticated(
        "this endpoint needs the admin token: send 'Authorization: Bearer <token>'");
  // Compare in constant time: the token is a secret.
  const std::string& got = *authorization;
  unsigned diff = got.size() == want.size() ? 0u : 1u;
  for (size_t i = 0; i < want.size(); ++i)
    diff |= static_cast<unsigned>(want[i] ^ (i < got.size() ? got[i] : 0));
  if (diff) return Status::Unauthenticated("the admin token is wrong");
  return Status::OK();
}

std::vector<std::string> ServerContext::Extensions() const {
  std::vector<std::string> e = {"binary_tensor_data",   "parameters",      "model_repository",
                                "model_configuration",  "schedule_policy", "statistics",
                                "system_shared_memory", "logging"};
  if (CudaShmRegistry::Available()) e.push_back("cuda_shared_memory");
  return e;
}

bool ServerContext::Ready() const { return !stopping_.load() && manager_->AllReady(); }

void ServerContext::RunAdmin(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(admin_mu_);
    admin_queue_.push_back(std::move(work));
  }
  admin_cv_.notify_one();
}

void ServerContext::AdminLoop() {
  std::unique_lock<std::mutex> lock(admin_mu_);
  while (true) {
    admin_cv_.wait(lock, [&] { return admin_stop_ || !admin_queue_.empty(); });
    if (admin_queue_.empty()) return;  // stopping and drained
    auto work = std::move(admin_queue_.front());
    admin_queue_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
}

ServerContext::LogSettings ServerContext::log_settings() const {
  std::lock_guard<std::mutex> lock(log_mu_);
  return log_;
}

Status ServerContext::SetLogSettings(const LogSettings& s) {
  if (s.format != "default" && s.format != "ISO8601")
    return Status::InvalidArgument("log_format must be \"default\" or \"ISO8601\", got \"" +
                                   s.format + "\"");
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    log_ = s;
  }
  // spdlog has one threshold: the lowest severity that is on.
  spdlog::level::level_enum lvl = spdlog::level::off;
  if (s.error) lvl = spdlog::level::err;
  if (s.warning) lvl = spdlog::level::warn;
  if (s.info) lvl = spdlog::level::info;
  if (s.verbose_level > 0) lvl = spdlog::level::debug;
  spdlog::set_level(lvl);
  spdlog::set_pattern(s.format == "ISO8601" ? "%Y-%m-%dT%H:%M:%S.%fZ %l %v" : "%+",
                      spdlog::pattern_time_type::utc);
  return Status::OK();
}

}  // namespace tessera::server
