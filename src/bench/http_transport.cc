// HTTP/1.1 transport: one thread runs an epoll loop that both keeps the schedule (it sleeps until
// the next request is due) and drives non-blocking keep-alive connections, at most one request in
// flight on each (KServe servers answer requests on a connection in order, so pipelining would
// only add head-of-line waiting). A request due while every connection is busy opens another, up
// to the limit, then waits for the first free one; its latency still counts from its due time.
// Responses are parsed with http-parser (the same parser the server uses).
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>

#include "bench/transport.h"

namespace tessera::bench {
namespace {

using nlohmann::json;

std::string Trim(std::string s, size_t n) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

// The JSON "error" of a KServe error body, else the body itself (shortened).
std::string ErrorText(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string())
    return j["error"].get<std::string>();
  return Trim(body, 300);
}

template <typename T>
void AppendValues(const std::string& bytes, json* out) {
  const size_t n = bytes.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
    out->push_back(v);
  }
}

Status JsonData(const std::string& dt, const std::string& bytes, json* out) {
  *out = json::array();
  if (dt == "FP32")
    AppendValues<float>(bytes, out);
  else if (dt == "FP64")
    AppendValues<double>(bytes, out);
  else if (dt == "INT8")
    AppendValues<int8_t>(bytes, out);
  else if (dt == "INT16")
    AppendValues<int16_t>(bytes, out);
  else if (dt == "INT32")
    AppendValues<int32_t>(bytes, out);
  else if (dt == "INT64")
    AppendValues<int64_t>(bytes, out);
  else if (dt == "UINT8")
    AppendValues<uint8_t>(bytes, out);
  else if (dt == "UINT16")
    AppendValues<uint16_t>(bytes, out);
  else if (dt == "UINT32")
    AppendValues<uint32_t>(bytes, out);
  else if (dt == "UINT64")
    AppendValues<uint64_t>(bytes, out);
  else if (dt == "BOOL") {
    for (char c : bytes) out->push_back(c != 0);
  } else {
    return Status::InvalidArgument("datatype " + dt + " has no JSON form; use binary tensors");
  }
  return Status::OK();
}

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string host_port;
};

Result<Endpoint> Resolve(const std::string& url) {
  std::string hp = url;
  if (hp.rfind("http://", 0) == 0) hp = hp.substr(7);
  if (!hp.empty() && hp.back() == '/') hp.pop_back();
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == hp.size())
    return Status::InvalidArgument("url '" + url + "': expected host:port");
  std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res)
    return Status::InvalidArgument("url '" + url + "': cannot resolve: " + gai_strerror(rc));
  Endpoint e;
  std::memcpy(&e.addr, res->ai_addr, res->ai_addrlen);
  e.len = res->ai_addrlen;
  e.host_port = hp;
  freeaddrinfo(res);
  return e;
}

struct Parse {
  http_parser parser;
  std::string body;
  bool keep_body = true;
  bool complete = false;
};

http_parser_settings MakeSettings() {
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_body = [](http_parser* p, const char* at, size_t n) {
    auto* st = static_cast<Parse*>(p->data);
    if (st->keep_body || p->status_code >= 400) {
      if (st->body.size() < (1u << 26)) st->body.append(at, n);
    }
    return 0;
  };
  s.on_message_complete = [](http_parser* p) {
    static_cast<Parse*>(p->data)->complete = true;
    http_parser_pause(p, 1);  // one response at a time
    return 0;
  };
  return s;
}

const http_parser_settings& Settings() {
  static const http_parser_settings s = MakeSettings();
  return s;
}

Result<std::pair<int, std::string>> HttpExchange(const Endpoint& ep, const std::string& method,
                                                 const std::string& path, const std::string& body,
                                                 const std::string& authorization) {
  const int fd = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Internal(std::string("socket: ") + strerror(errno));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0) {
    const std::string err = strerror(errno);
    close(fd);
    return Status::Unavailable("cannot connect to " + ep.host_port + " (HTTP): " + err);
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + ep.host_port +
                    "\r\nConnection: close\r\nContent-Type: application/json\r\n" +
                    (authorization.empty() ? "" : "Authorization: " + authorization + "\r\n") +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    const ssize_t n = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      close(fd);
      return Status::Unavailable("sending to " + ep.host_port + " failed");
    }
    off += static_cast<size_t>(n);
  }
  Parse st;
  http_parser_init(&st.parser, HTTP_RESPONSE);
  st.parser.data = &st;
  char buf[16384];
  while (!st.complete) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n == 0) http_parser_execute(&st.parser, &Settings(), buf, 0);  // EOF ends the body
      if (st.complete) break;
      close(fd);
      return Status::Unavailable("no complete answer from " + ep.host_port + " to " + path);
    }
    http_parser_execute(&st.parser, &Settings(), buf, static_cast<size_t>(n));
    if (HTTP_PARSER_ERRNO(&st.parser) != HPE_OK && HTTP_PARSER_ERRNO(&st.parser) != HPE_PAUSED) {
      close(fd);
      return Status::Internal("malformed HTTP answer from " + ep.host_port);
    }
  }
  close(fd);
  return std::make_pair(static_cast<int>(st.parser.status_code), st.body);
}

}  // namespace

Result<std::pair<int, std::string>> HttpRequest(const std::string& url, const std::string& method,
                                                const std::string& path, const std::string& body,
                                                const std::string& authorization) {
  TESSERA_ASSIGN_OR_RETURN(Endpoint ep, Resolve(url));
  return HttpExchange(ep, method, path, body, authorization);
}

namespace {

class HttpTransport final : public Transport {
 public:
  HttpTransport(Endpoint ep, bool binary, int max_connections, int64_t spin_ns)
      : ep_(std::move(ep)),
        binary_(binary),
        max_conns_(std::max(1, max_connections)),
        spin_ns_(spin_ns) {}

  Result<ModelMeta> Metadata(const std::string& model, const std::string& version) override {
    auto r = Exchange("GET", ModelPath(model, version), "");
    if (!r.ok()) return r.status();
    const std::string what = "metadata of model '" + model + "'";
    if (r->first != 200) return HttpError(r->first, r->second, what);
    json j = json::parse(r->second, nullptr, false);
    if (!j.is_object()) return Status::Internal(what + ": not a JSON object");
    ModelMeta m;
    auto copy = [&](const char* key, std::vector<TensorMeta>* to) -> Status {
      if (!j.contains(key) || !j[key].is_array()) return Status::OK();
      for (const auto& t : j[key]) {
        if (!t.is_object() || !t.contains("name") || !t.contains("datatype") ||
            !t.contains("shape"))
          return Status::Internal(what + ": malformed tensor entry");
        TensorMeta tm{t["name"].get<std::string>(), t["datatype"].get<std::string>(), {}};
        for (const auto& d : t["shape"]) tm.shape.push_back(d.get<int64_t>());
        to->push_back(tm);
      }
      return Status::OK();
    };
    try {
      auto st = copy("inputs", &m.inputs);
      if (!st.ok()) return st;
      st = copy("outputs", &m.outputs);
      if (!st.ok()) return st;
    } catch (const std::exception& e) {
      return Status::Internal(what + ": " + e.what());
    }
    return m;
  }

  Status RegisterShm(const std::string& region, const std::string& key, uint64_t bytes) override {
    json body = {{"key", key}, {"offset", 0}, {"byte_size", bytes}};
    auto r = Exchange("POST", "/v2/systemsharedmemory/region/" + region + "/register", body.dump());
    if (!r.ok()) return r.status();
    if (r->first != 200)
      return HttpError(r->first, r->second, "registering shared memory '" + region + "'");
    return Status::OK();
  }

  Status UnregisterShm(const std::string& region) override {
    auto r = Exchange("POST", "/v2/systemsharedmemory/region/" + region + "/unregister", "");
    if (!r.ok()) return r.status();
    if (r->first != 200)
      return HttpError(r->first, r->second, "unregistering shared memory '" + region + "'");
    return Status::OK();
  }

  Status Prepare(const std::vector<PreparedModel>& models) override {
    requests_.clear();
    for (const auto& m : models) {
      json inputs = json::array();
      std::string tail;
      const bool shm = !m.shm_region.empty();
      for (const auto& in : m.inputs) {
        json t = {{"name", in.name}, {"datatype", in.datatype}, {"shape", in.shape}};
        if (shm) {
          t["parameters"] = {{"shared_memory_region", m.shm_region},
                             {"shared_memory_offset", in.shm_offset},
                             {"shared_memory_byte_size", in.data.size()}};
        } else if (binary_) {
          t["parameters"] = {{"binary_data_size", in.data.size()}};
          tail += in.data;
        } else {
          json data;
          auto st = JsonData(in.datatype, in.data, &data);
          if (!st.ok())
            return Status::InvalidArgument("model '" + m.name + "', input '" + in.name +
                                           "': " + st.message());
          t["data"] = std::move(data);
        }
        inputs.push_back(std::move(t));
      }
      json req = {{"inputs", inputs}};
      if (binary_ || shm) req["parameters"]["binary_data_output"] = true;
      if (m.priority > 0) req["parameters"]["priority"] = m.priority;
      const std::string header = req.dump();
      std::string head = "POST " + ModelPath(m.name, m.version) +
                         "/infer HTTP/1.1\r\nHost: " + ep_.host_port + "\r\n";
      if (!tail.empty()) {
        head += "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: " +
                std::to_string(header.size()) + "\r\n";
      } else {
        head += "Content-Type: application/json\r\n";
      }
      head += "Content-Length: " + std::to_string(header.size() + tail.size()) + "\r\n\r\n";
      requests_.push_back(head + header + tail);
    }
    return Status::OK();
  }

  void Run(Scheduler& sched, Recorder& rec, int64_t t0_ns, int64_t drain_ns) override;

 private:
  struct Conn {
    int fd = -1;
    bool connecting = true;
    bool busy = false;
    int model = 0;
    int64_t due_ns = 0;
    size_t off = 0;  // bytes of the request written
    Parse parse;
  };

  static std::string ModelPath(const std::string& model, const std::string& version) {
    std::string p = "/v2/models/" + model;
    if (!version.empty()) p += "/versions/" + version;
    return p;
  }

  static Status HttpError(int code, const std::string& body, const std::string& what) {
    const std::string m = what + ": HTTP " + std::to_string(code) + ": " + ErrorText(body);
    if (code == 404) return Status::NotFound(m);
    if (code == 400) return Status::InvalidArgument(m);
    if (code == 503) return Status::Unavailable(m);
    return Status::Internal(m);
  }

  // A blocking request on a fresh connection (set-up calls only).
  Result<std::pair<int, std::string>> Exchange(const std::string& method, const std::string& path,
                                               const std::string& body) {
    return HttpExchange(ep_, method, path, body, "");
  }

  Endpoint ep_;
  bool binary_;
  int max_conns_;
  int64_t spin_ns_;
  std::vector<std::string> requests_;
};

void HttpTransport::Run(Scheduler& sched, Recorder& rec, int64_t t0_ns, int64_t drain_ns) {
  UsePreciseTimers();
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<std::unique_ptr<Conn>> conns;  // owned; index is stable while open
  std::vector<Conn*> idle;
  std::deque<std::pair<int, int64_t>> waiting;  // due requests with no free connection
  int open = 0;
  int64_t in_flight = 0;
  bool use_pwait2 = true;

  auto finish = [&](Conn* c, const Outcome& o) {
    rec.Done(c->model, c->due_ns, MonotonicNs() - t0_ns, o);
    c->busy = false;
    --in_flight;
  };
  auto close_conn = [&](Conn* c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
    c->fd = -1;
    --open;
    std::erase(idle, c);
  };
  auto fail = [&](Conn* c, const std::string& kind, const std::string& msg) {
    if (c->busy) finish(c, Outcome{false, kind, msg});
    close_conn(c);
  };
  // Writes as much of the request as the socket takes; false when the connection broke.
  auto pump = [&](Conn* c) {
    const std::string& out = requests_[c->model];
    while (c->off < out.size()) {
      const ssize_t n = send(c->fd, out.data() + c->off, out.size() - c->off, MSG_NOSIGNAL);
      if (n > 0) {
        c->off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      fail(c, "connection_closed", std::string("send: ") + strerror(errno));
      return false;
    }
    return true;
  };
  auto start = [&](Conn* c, int model, int64_t due) {
    c->busy = true;
    c->model = model;
    c->due_ns = due;
    c->off = 0;
    c->parse.body.clear();
    c->parse.complete = false;
    c->parse.keep_body = false;
    http_parser_init(&c->parse.parser, HTTP_RESPONSE);
    c->parse.parser.data = &c->parse;
    ++in_flight;
    rec.Sent(model, due, MonotonicNs() - t0_ns);
    if (!c->connecting) pump(c);
  };
  auto open_conn = [&](int model, int64_t due) {
    auto c = std::make_unique<Conn>();
    c->fd = socket(ep_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    Conn* raw = c.get();
    if (c->fd < 0) {
      rec.Sent(model, due, MonotonicNs() - t0_ns);
      rec.Done(model, due, MonotonicNs() - t0_ns,
               Outcome{false, "connect_failed", std::string("socket: ") + strerror(errno)});
      return;
    }
    const int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int rc = connect(c->fd, reinterpret_cast<const sockaddr*>(&ep_.addr), ep_.len);
    c->connecting = rc != 0;
    if (rc != 0 && errno != EINPROGRESS) {
      const std::string err = strerror(errno);
      close(c->fd);
      rec.Sent(model, due, MonotonicNs() - t0_ns);
      rec.Done(model, due, MonotonicNs() - t0_ns, Outcome{false, "connect_failed", err});
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = raw;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    ++open;
    // Reuse a closed slot, else grow.
    bool placed = false;
    for (auto& slot : conns)
      if (slot->fd < 0) {
        slot = std::move(c);
        placed = true;
        break;
      }
    if (!placed) conns.push_back(std::move(c));
    start(raw, model, due);
  };
  auto dispatch = [&](int model, int64_t due) {
    if (!idle.empty()) {
      Conn* c = idle.back();
      idle.pop_back();
      start(c, model, due);
    } else if (open < max_conns_) {
      open_conn(model, due);
    } else {
      waiting.emplace_back(model, due);
    }
  };
  auto became_free = [&](Conn* c) {
    if (c->fd < 0) return;
    if (!waiting.empty()) {
      auto [m, d] = waiting.front();
      waiting.pop_front();
      start(c, m, d);
    } else {
      idle.push_back(c);
    }
  };
  auto on_readable = [&](Conn* c) {
    char buf[65536];
    for (;;) {
      const ssize_t n = recv(c->fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        fail(c, "connection_closed",
             n == 0 ? "the server closed the connection" : std::string(strerror(errno)));
        return;
      }
      if (!c->busy) {
        fail(c, "bad_response", "data on an idle connection");
        return;
      }
      size_t used = http_parser_execute(&c->parse.parser, &Settings(), buf, n);
      const auto err = HTTP_PARSER_ERRNO(&c->parse.parser);
      if (err != HPE_OK && err != HPE_PAUSED) {
        fail(c, "bad_response", http_errno_description(err));
        return;
      }
      if (c->parse.complete) {
        if (used != static_cast<size_t>(n)) {
          fail(c, "bad_response", "more bytes than one response");
          return;
        }
        const int code = static_cast<int>(c->parse.parser.status_code);
        Outcome o;
        if (code != 200) {
          o.ok = false;
          o.kind = "http_" + std::to_string(code);
          o.message = ErrorText(c->parse.body);
        }
        const bool keep = http_should_keep_alive(&c->parse.parser);
        finish(c, o);
        if (!keep) {
          close_conn(c);
        } else {
          became_free(c);
        }
        return;
      }
    }
  };

  int64_t drain_deadline = -1;
  epoll_event events[256];
  for (;;) {
    const int64_t now = MonotonicNs();
    while (sched.PeekNs() >= 0 && t0_ns + sched.PeekNs() <= now) {
      const auto [m, d] = sched.Pop();
      dispatch(m, d);
    }
    while (!waiting.empty() && open < max_conns_) {  // a connection failed or closed
      const auto [m, d] = waiting.front();
      waiting.pop_front();
      open_conn(m, d);
    }
    int64_t wait_until;
    if (sched.PeekNs() >= 0) {
      // Close to the next due time, poll instead of sleeping (see SleepUntilNs).
      wait_until = t0_ns + sched.PeekNs() - spin_ns_;
    } else {
      if (in_flight == 0 && waiting.empty()) break;
      if (drain_deadline < 0) drain_deadline = now + drain_ns;
      if (now >= drain_deadline) break;
      wait_until = drain_deadline;
    }
    const int64_t wait = std::max<int64_t>(0, wait_until - MonotonicNs());
    int n;
    if (use_pwait2) {
      timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
      n = epoll_pwait2(ep, events, 256, &ts, nullptr);
      if (n < 0 && errno == ENOSYS) {
        use_pwait2 = false;
        continue;
      }
    } else {
      n = epoll_wait(ep, events, 256, static_cast<int>((wait + 999999) / 1000000));
    }
    for (int i = 0; i < n; ++i) {
      Conn* c = static_cast<Conn*>(events[i].data.ptr);
      if (c->fd < 0) continue;
      const uint32_t e = events[i].events;
      if (c->connecting) {
        if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          fail(c, "connect_failed",
               std::string("connect to ") + ep_.host_port + ": " + strerror(err));
          continue;
        }
        c->connecting = false;
        if (c->busy && !pump(c)) continue;
      } else if ((e & EPOLLOUT) && c->busy) {
        if (!pump(c)) continue;
      }
      if (c->fd >= 0 && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
  }
  // What is left had no answer in time.
  for (auto& c : conns)
    if (c->fd >= 0) {
      if (c->busy)
        finish(c.get(), Outcome{false, "no_response", "no answer before the drain timeout"});
      close(c->fd);
      c->fd = -1;
    }
  for (auto [m, d] : waiting) {
    rec.Sent(m, d, MonotonicNs() - t0_ns);
    rec.Done(m, d, MonotonicNs() - t0_ns,
             Outcome{false, "no_response", "no free connection before the drain timeout"});
  }
  close(ep);
}

}  // namespace

Result<std::unique_ptr<Transport>> MakeHttpTransport(const std::string& url, bool binary,
                                                     int max_connections, int64_t spin_ns) {
  auto ep = Resolve(url);
  if (!ep.ok()) return ep.status();
  return std::unique_ptr<Transport>(
      std::make_unique<HttpTransport>(*ep, binary, max_connections, spin_ns));
}

}  // namespace tessera::bench
