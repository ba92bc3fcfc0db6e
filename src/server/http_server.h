// A small HTTP/1.1 server: libevent for sockets and event loops, http-parser for the protocol.
// Each of N threads runs its own event loop and listener (SO_REUSEPORT spreads connections);
// a request is handed to the handler on its connection's loop thread once its body is in, and
// may be answered later from any thread. One request per connection is in progress at a time
// (pipelined requests wait in the socket buffer). Bodies over the limit are refused as soon as
// their headers say so, with a JSON 413, before any of the body is read.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/core/body.h"
#include "tessera/core/status.h"
#include "tessera/core/tensor.h"

namespace tessera::server {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-decoded
  std::string query;
  Headers headers;             // names lower-cased
  std::shared_ptr<Body> body;  // pinned on GPU servers (tessera/core/body.h)
  int64_t arrive_ns = 0;       // the whole request was read (SystemClock)
  std::string peer;            // client address
  // The first header named `lower_name`, or null.
  const std::string* Header(const std::string& lower_name) const;
};

struct HttpResponse {
  int status = 200;
  Headers headers;  // Content-Length is added
  std::string body;
  // Sent after `body` without copying (e.g. binary output tensors); kept alive until written.
  std::vector<Tensor> tail;
};

// Answers one request. Thread-safe; the first Reply wins, later ones are ignored. Dropping the
// last reference without replying answers 500 (a bug, but the client is not left hanging).
class HttpReplier {
 public:
  virtual ~HttpReplier() = default;
  virtual void Reply(HttpResponse response) = 0;
};

class HttpServer {
 public:
  struct Options {
    std::string address = "0.0.0.0";
    int port = 8000;  // 0: any free port (see port())
    int threads = 2;
    size_t max_body_bytes = 64 << 20;
    int idle_timeout_s = 300;  // idle keep-alive connections are closed after this
  };
  using Handler = std::function<void(HttpRequest&&, std::shared_ptr<HttpReplier>)>;

  // Binds and starts the loops. Unavailable says why binding failed.
  static Result<std::unique_ptr<HttpServer>> Start(const Options& options, Handler handler);
  ~HttpServer();
  int port() const { return port_; }
  // Stops accepting connections; open ones keep being served.
  void StopAccepting();
  // Closes every connection and stops the loops.
  void Stop();
  // Connections open now.
  int connections() const { return connections_.load(); }
  const Options& options() const { return opts_; }
  const Handler& handler() const { return handler_; }
  std::atomic<int>& connections_counter() { return connections_; }

  struct Loop;  // one event loop thread (http_server.cc)

 private:
  HttpServer() = default;
  Options opts_;
  Handler handler_;
  int port_ = 0;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<int> connections_{0};
  friend struct Loop;
};

// {"error": message}, the body of every error response.
std::string ErrorJson(const std::string& message);
HttpResponse ErrorResponse(const Status& st);

}  // namespace tessera::server
