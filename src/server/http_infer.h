// The HTTP inference body: KServe v2 JSON, with Triton's binary-tensor extension (a JSON
// header of Inference-Header-Content-Length bytes followed by raw tensor bytes) and
// shared-memory parameters, to a runtime request; and a runtime response back to a body.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/tensor_io.h"
#include "tessera/runtime/request.h"

namespace tessera::server {

// How the client wants its answer; travels from the parse to the response.
struct HttpInferOptions {
  std::vector<OutputRequest> outputs;  // as listed in the request; empty: every output
  bool binary_all = false;             // request parameter binary_data_output
  bool timing = false;                 // request parameter tessera_timing: timings in the answer
};

struct ParsedHttpInfer {
  RequestPtr request;  // inputs, outputs, id, priority, timeout; not model / version / done
  std::shared_ptr<HttpInferOptions> options;
};

// Parses `body` (kept alive by the tensors that view it). `header_length`: the value of
// Inference-Header-Content-Length, null when the whole body is JSON. InvalidArgument says
// what is wrong and where.
Result<ParsedHttpInfer> ParseHttpInfer(ServerContext& ctx, const std::shared_ptr<Body>& body,
                                       const std::string* header_length);

// The answer: JSON, or JSON header plus binary outputs; outputs requested in shared memory
// are written there. An error response when `resp` failed or a shm write fails.
HttpResponse BuildHttpInferResponse(ServerContext& ctx, InferenceResponse&& resp,
                                    const HttpInferOptions& options);

}  // namespace tessera::server
