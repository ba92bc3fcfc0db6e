// libFuzzer target: arbitrary bytes as a gRPC ModelInferRequest through Tessera's wire reader
// (server/grpc_wire.h), cut into receive slices where the first byte says, walked field by
// field into body memory or parsed whole, as the first byte's high bit says. Any crash, leak or
// sanitizer report is a bug: bad messages must come back as a Status; a message the reader
// accepts must agree with protobuf's own parse of the same bytes.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "server/grpc_wire.h"
#include "tessera/core/body.h"

namespace {
// Map fields serialize in an order that differs between two equal messages unless asked not to.
std::string Deterministic(const google::protobuf::MessageLite& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }  // flushed into `out` here
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte: the slice size (low 7 bits), and whether body memory takes every message
  // (walked field by field) or none is installed (parsed whole by protobuf).
  const size_t cut = 1 + (data[0] & 0x7f);
  if (data[0] & 0x80)
    tessera::SetBodyMemory({});
  else
    tessera::SetBodyMemory({[](size_t n) { return std::malloc(n); },
                            [](void* p) {
                              std::free(p);
                              return true;
                            },
                            0});
  const auto* bytes = reinterpret_cast<const char*>(data + 1);
  const size_t n = size - 1;
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < n; at += cut) slices.emplace_back(bytes + at, std::min(cut, n - at));
  grpc::ByteBuffer wire(slices.data(), slices.size());
  auto got = tessera::server::ReadInferRequest(wire);
  inference::ModelInferRequest whole;
  const bool protobuf_ok = whole.ParseFromArray(bytes, static_cast<int>(n));
  if (!got.ok()) return 0;
  // Accepted: protobuf accepts it too, with the same raw entries and the same other fields.
  if (!protobuf_ok) std::abort();
  if (static_cast<size_t>(whole.raw_input_contents_size()) != got->raw.size()) std::abort();
  for (size_t i = 0; i < got->raw.size(); ++i) {
    const std::string& w = whole.raw_input_contents(static_cast<int>(i));
    if (w.size() != got->raw[i].bytes ||
        (w.size() && std::string(static_cast<const char*>(got->raw[i].data), w.size()) != w))
      std::abort();
  }
  whole.clear_raw_input_contents();
  if (Deterministic(whole) != Deterministic(got->meta)) std::abort();
  return 0;
}
