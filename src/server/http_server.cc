#include "server/http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "tessera/core/clock.h"

namespace tessera::server {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string Lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Tasks posted to a loop from other threads. Shared with repliers, so a reply that arrives
// after the server stopped finds a closed mailbox instead of a freed loop.
struct Mailbox {
  std::mutex mu;
  std::vector<std::function<void()>> tasks;
  event* wake = nullptr;
  bool closed = false;
  void Post(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mu);
    if (closed) return;
    tasks.push_back(std::move(f));
    event_active(wake, EV_READ, 0);
  }
};

struct Conn;
void WriteResponse(const std::shared_ptr<Conn>& c, HttpResponse&& r);

class ReplierImpl final : public HttpReplier {
 public:
  ReplierImpl(std::weak_ptr<Conn> conn, std::shared_ptr<Mailbox> box, uint64_t seq)
      : conn_(std::move(conn)), box_(std::move(box)), seq_(seq) {}
  ~ReplierImpl() override {
    if (!done_.load())
      Reply(ErrorResponse(Status::Internal("the server produced no response to this request")));
  }
  void Reply(HttpResponse response) override;

 private:
  std::weak_ptr<Conn> conn_;
  std::shared_ptr<Mailbox> box_;
  uint64_t seq_;
  std::atomic<bool> done_{false};
};

}  // namespace

struct HttpServer::Loop {
  HttpServer* server = nullptr;
  event_base* base = nullptr;
  evconnlistener* listener = nullptr;
  std::shared_ptr<Mailbox> box = std::make_shared<Mailbox>();
  std::unordered_set<std::shared_ptr<Conn>> conns;
  std::thread thread;
  ~Loop();
  void Close(const std::shared_ptr<Conn>& c);
};

namespace {

http_parser_settings* Settings();

struct Conn : std::enable_shared_from_this<Conn> {
  HttpServer::Loop* loop = nullptr;
  bufferevent* bev = nullptr;
  http_parser parser{};
  std::string url, field, value;
  bool in_value = false;
  HttpRequest req;
  bool message_done = false;
  bool awaiting = false;  // a request is with the handler
  bool closing = false;   // close once the output is flushed
  bool dead = false;
  bool keep_alive = true;
  int reject_status = 0;  // refuse the request being read (413) and close
  std::string reject_message;
  bool discard = false;  // refused: swallow the rest of the body until the client is done
  uint64_t seq = 0;

  void FlushHeader() {
    if (!field.empty()) req.headers.emplace_back(Lower(field), value);
    field.clear();
    value.clear();
    in_value = false;
  }
  void Reset() {
    url.clear();
    field.clear();
    value.clear();
    in_value = false;
    req = HttpRequest{};
    message_done = false;
  }
};

Conn* Of(http_parser* p) { return static_cast<Conn*>(p->data); }

int OnMessageBegin(http_parser* p) {
  Of(p)->Reset();
  return 0;
}
int OnUrl(http_parser* p, const char* at, size_t n) {
  Of(p)->url.append(at, n);
  return 0;
}
int OnHeaderField(http_parser* p, const char* at, size_t n) {
  Conn* c = Of(p);
  if (c->in_value) c->FlushHeader();
  c->field.append(at, n);
  return 0;
}
int OnHeaderValue(http_parser* p, const char* at, size_t n) {
  Conn* c = Of(p);
  c->in_value = true;
  c->value.append(at, n);
  return 0;
}
int OnHeadersComplete(http_parser* p) {
  Conn* c = Of(p);
  c->FlushHeader();
  c->keep_alive = http_should_keep_alive(p) != 0;
  const size_t limit = c->loop->server->options().max_body_bytes;
  c->req.body = std::make_shared<Body>();
  const bool has_length = p->content_length != ULLONG_MAX && p->content_length > 0;
  if (has_length && p->content_length > limit) {
    c->reject_status = 413;
    c->reject_message = "request body of " + std::to_string(p->content_length) +
                        " bytes exceeds the server's limit of " + std::to_string(limit) +
                        " bytes (--max-request-bytes)";
    http_parser_pause(p, 1);
    return 0;
  }
  if (has_length) c->req.body->reserve(p->content_length);
  const std::string* expect = c->req.Header("expect");
  if (expect && Lower(*expect) == "100-continue") {
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    bufferevent_write(c->bev, kContinue, sizeof(kContinue) - 1);
  }
  return 0;
}
int OnBody(http_parser* p, const char* at, size_t n) {
  Conn* c = Of(p);
  const size_t limit = c->loop->server->options().max_body_bytes;
  if (c->req.body->size() + n > limit) {  // chunked bodies: no length up front
    c->reject_status = 413;
    c->reject_message = "request body exceeds the server's limit of " + std::to_string(limit) +
                        " bytes (--max-request-bytes)";
    http_parser_pause(p, 1);
    return 0;
  }
  c->req.body->append(at, n);
  return 0;
}
int OnMessageComplete(http_parser* p) {
  Conn* c = Of(p);
  c->message_done = true;
  http_parser_pause(p, 1);  // one request at a time
  return 0;
}

http_parser_settings* Settings() {
  static http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    x.on_message_begin = OnMessageBegin;
    x.on_url = OnUrl;
    x.on_header_field = OnHeaderField;
    x.on_header_value = OnHeaderValue;
    x.on_headers_complete = OnHeadersComplete;
    x.on_body = OnBody;
    x.on_message_complete = OnMessageComplete;
    return x;
  }();
  return &s;
}

void ProcessInput(const std::shared_ptr<Conn>& c);

void Dispatch(const std::shared_ptr<Conn>& c) {
  HttpRequest req = std::move(c->req);
  req.method = http_method_str(static_cast<http_method>(c->parser.method));
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(c->url.data(), c->url.size(), 0, &u) == 0) {
    if (u.field_set & (1 << UF_PATH))
      req.path = PercentDecode(c->url.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len));
    if (u.field_set & (1 << UF_QUERY))
      req.query = c->url.substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
  } else {
    req.path = PercentDecode(c->url);
  }
  req.arrive_ns = SystemClock::Default()->NowNs();
  c->awaiting = true;
  ++c->seq;
  bufferevent_set_timeouts(c->bev, nullptr, nullptr);  // inference may take long
  auto replier = std::make_shared<ReplierImpl>(c, c->loop->box, c->seq);
  c->loop->server->handler()(std::move(req), std::move(replier));
}

void Refuse(const std::shared_ptr<Conn>& c, int status, const std::string& message) {
  c->keep_alive = false;
  c->awaiting = true;
  ++c->seq;
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = ErrorJson(message);
  WriteResponse(c, std::move(r));
  // A client that sends its whole body before reading would see a reset instead of this
  // answer if the socket closed now: read and drop what it still sends, for a while.
  c->discard = true;
  timeval grace{5, 0};
  bufferevent_set_timeouts(c->bev, &grace, nullptr);
}

void ProcessInput(const std::shared_ptr<Conn>& c) {
  evbuffer* in = bufferevent_get_input(c->bev);
  if (c->discard) {
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  while (!c->awaiting && !c->dead && !c->closing && evbuffer_get_length(in) > 0) {
    evbuffer_iovec v;
    if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1) break;
    const size_t used = http_parser_execute(&c->parser, Settings(),
                                            static_cast<const char*>(v.iov_base), v.iov_len);
    evbuffer_drain(in, used);
    const http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) http_parser_pause(&c->parser, 0);
    if (c->reject_status) {
      Refuse(c, c->reject_status, c->reject_message);
      return;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
      Refuse(c, 400, std::string("malformed HTTP request: ") + http_errno_description(err));
      return;
    }
    if (c->message_done) {
      c->message_done = false;
      Dispatch(c);
    }
  }
}

void WriteResponse(const std::shared_ptr<Conn>& c, HttpResponse&& r) {
  if (c->dead) return;
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) + "\r\n";
  size_t length = r.body.size();
  for (const auto& t : r.tail) length += t.nbytes();
  for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
  head += "Content-Length: " + std::to_string(length) + "\r\n";
  if (!c->keep_alive) head += "Connection: close\r\n";
  head += "\r\n";
  evbuffer* out = bufferevent_get_output(c->bev);
  evbuffer_add(out, head.data(), head.size());
  evbuffer_add(out, r.body.data(), r.body.size());
  for (auto& t : r.tail) {
    if (t.nbytes() == 0) continue;
    auto* keep = new Tensor(t);
    evbuffer_add_reference(
        out, keep->raw(), keep->nbytes(),
        [](const void*, size_t, void* arg) { delete static_cast<Tensor*>(arg); }, keep);
  }
  c->awaiting = false;
  if (!c->keep_alive) {
    c->closing = true;  // closed by the write callback once flushed
    return;
  }
  timeval idle{c->loop->server->options().idle_timeout_s, 0};
  bufferevent_set_timeouts(c->bev, &idle, nullptr);
  ProcessInput(c);  // a pipelined request may be waiting
}

void ReplierImpl::Reply(HttpResponse response) {
  if (done_.exchange(true)) return;
  auto shared = std::make_shared<HttpResponse>(std::move(response));
  std::weak_ptr<Conn> conn = conn_;
  const uint64_t seq = seq_;
  box_->Post([conn, seq, shared] {
    auto c = conn.lock();
    if (!c || c->dead || c->seq != seq || !c->awaiting) return;
    WriteResponse(c, std::move(*shared));
  });
}

void OnRead(bufferevent*, void* arg) {
  auto* raw = static_cast<Conn*>(arg);
  auto c = raw->shared_from_this();
  ProcessInput(c);
}

void OnWrite(bufferevent* bev, void* arg) {
  auto* raw = static_cast<Conn*>(arg);
  if (!raw->closing || evbuffer_get_length(bufferevent_get_output(bev)) != 0) return;
  if (raw->discard) {  // answered; end our side and wait for the client to finish sending
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    return;
  }
  raw->loop->Close(raw->shared_from_this());
}

void OnEvent(bufferevent*, short what, void* arg) {
  auto* raw = static_cast<Conn*>(arg);
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
    raw->loop->Close(raw->shared_from_this());
}

void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int, void* arg) {
  auto* loop = static_cast<HttpServer::Loop*>(arg);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto c = std::make_shared<Conn>();
  c->loop = loop;
  c->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!c->bev) {
    evutil_closesocket(fd);
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c.get();
  char host[64] = "";
  if (addr->sa_family == AF_INET)
    evutil_inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(addr)->sin_addr, host, sizeof(host));
  c->req.peer = host;
  bufferevent_setcb(c->bev, OnRead, OnWrite, OnEvent, c.get());
  timeval idle{loop->server->options().idle_timeout_s, 0};
  bufferevent_set_timeouts(c->bev, &idle, nullptr);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  loop->conns.insert(c);
  loop->server->connections_counter()++;
}

void OnWake(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<HttpServer::Loop*>(arg);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(loop->box->mu);
    tasks.swap(loop->box->tasks);
  }
  for (auto& t : tasks) t();
}

}  // namespace

void HttpServer::Loop::Close(const std::shared_ptr<Conn>& c) {
  if (c->dead) return;
  c->dead = true;
  bufferevent_free(c->bev);
  c->bev = nullptr;
  conns.erase(c);
  server->connections_counter()--;
}

HttpServer::Loop::~Loop() {
  if (thread.joinable()) {
    event_base* b = base;
    box->Post([b] { event_base_loopbreak(b); });
    thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(box->mu);
    box->closed = true;
    box->tasks.clear();
  }
  for (auto c : std::vector<std::shared_ptr<Conn>>(conns.begin(), conns.end())) Close(c);
  if (listener) evconnlistener_free(listener);
  if (box->wake) event_free(box->wake);
  if (base) event_base_free(base);
}

const std::string* HttpRequest::Header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

std::string ErrorJson(const std::string& message) {
  std::string out = "{\"error\":\"";
  for (unsigned char ch : message) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
          out += buf;
        } else {
          out.push_back(static_cast<char>(ch));
        }
    }
  }
  return out + "\"}";
}

HttpResponse ErrorResponse(const Status& st) {
  HttpResponse r;
  r.status = HttpStatusOf(st.code());
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = ErrorJson(st.message());
  return r;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options, Handler handler) {
  static std::once_flag once;
  std::call_once(once, [] { evthread_use_pthreads(); });
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->opts_ = options;
  s->handler_ = std::move(handler);
  const int threads = std::max(1, options.threads);
  // evutil_parse_sockaddr_port refuses port 0, which asks the OS for any free port.
  sockaddr_storage ss{};
  int len = 0;
  const std::string host = options.address == "localhost" ? "127.0.0.1" : options.address;
  const std::string spec = host + ":" + std::to_string(options.port);
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
      evutil_inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(options.port));
    len = sizeof(sockaddr_in);
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
             evutil_inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(options.port));
    len = sizeof(sockaddr_in6);
  } else {
    return Status::InvalidArgument("cannot parse the listen address '" + options.address +
                                   "'; expected an IPv4 or IPv6 address");
  }
  if (options.port < 0 || options.port > 65535)
    return Status::InvalidArgument("port " + std::to_string(options.port) + " is out of range");
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Loop>();
    loop->server = s.get();
    loop->base = event_base_new();
    if (!loop->base) return Status::Unavailable("cannot create an event loop");
    loop->box->wake = event_new(loop->base, -1, EV_PERSIST, OnWake, loop.get());
    event_add(loop->box->wake, nullptr);
    if (i > 0 && options.port == 0) {  // every listener on the port the first one got
      if (ss.ss_family == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(static_cast<uint16_t>(s->port_));
      else
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(static_cast<uint16_t>(s->port_));
    }
    loop->listener = evconnlistener_new_bind(
        loop->base, OnAccept, loop.get(),
        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, reinterpret_cast<sockaddr*>(&ss), len);
    if (!loop->listener)
      return Status::Unavailable("cannot listen on " + spec + ": " +
                                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    if (i == 0) {
      sockaddr_storage bound{};
      socklen_t blen = sizeof(bound);
      getsockname(evconnlistener_get_fd(loop->listener), reinterpret_cast<sockaddr*>(&bound),
                  &blen);
      s->port_ =
          ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    }
    s->loops_.push_back(std::move(loop));
  }
  for (auto& l : s->loops_) {
    Loop* lp = l.get();
    lp->thread = std::thread([lp] { event_base_loop(lp->base, EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  return s;
}

void HttpServer::StopAccepting() {
  for (auto& l : loops_) {
    Loop* lp = l.get();
    lp->box->Post([lp] {
      if (lp->listener) evconnlistener_disable(lp->listener);
    });
  }
}

void HttpServer::Stop() {
  loops_.clear();  // each loop: break, join its thread, then free its connections
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace tessera::server
