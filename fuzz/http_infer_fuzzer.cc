// libFuzzer target: arbitrary bytes as an HTTP inference body through the KServe JSON /
// binary-tensor parser, and what parses back out through the response writer. The first byte
// chooses whether an Inference-Header-Content-Length is sent and the next two give its value.
// Any crash, leak or sanitizer report is a bug: bad bodies must come back as a Status.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "server/context.h"
#include "server/http_infer.h"

namespace {
tessera::server::ServerContext& Context() {
  static auto* manager = new tessera::ModelManager(tessera::ManagerOptions{});
  static auto* ctx = new tessera::server::ServerContext(manager, {});
  return *ctx;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const bool has_header = data[0] & 1;
  const std::string header_len = std::to_string((data[1] << 8) | data[2]);
  auto body = std::make_shared<tessera::Body>(reinterpret_cast<const char*>(data + 3), size - 3);
  auto& ctx = Context();
  auto parsed = tessera::server::ParseHttpInfer(ctx, body, has_header ? &header_len : nullptr);
  if (!parsed.ok()) return 0;
  // Echo the inputs as outputs through the writer, as JSON and as binary.
  tessera::InferenceResponse resp;
  resp.model = "fuzz";
  resp.version = 1;
  resp.id = parsed->request->id;
  resp.output_names = parsed->request->input_names;
  resp.outputs = parsed->request->inputs;
  parsed->options->outputs.clear();  // no shared-memory outputs: nothing is registered
  auto json = tessera::server::BuildHttpInferResponse(ctx, tessera::InferenceResponse(resp),
                                                      *parsed->options);
  parsed->options->binary_all = !parsed->options->binary_all;
  auto bin = tessera::server::BuildHttpInferResponse(ctx, std::move(resp), *parsed->options);
  (void)json;
  (void)bin;
  return 0;
}
