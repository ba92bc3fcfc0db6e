#include "server/grpc_wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <climits>
#include <string>

#include "tessera/core/body.h"

namespace tessera::server {

using google::protobuf::internal::WireFormatLite;

Result<WireInferRequest> ReadInferRequest(const grpc::ByteBuffer& wire) {
  WireInferRequest out;
  if (!wire.Valid() || wire.Length() == 0) return out;  // the empty message: every field unset
  grpc::ByteBuffer copy(wire);  // shares the slices; the reader needs a mutable buffer
  if (wire.Length() < BodyMemoryMinBytes()) {
    // Its tensors would land on the heap anyway: protobuf parses the whole message (as gRPC
    // would), and the raw entries are handed over in their strings.
    grpc::Slice one;
    const bool parsed = copy.TrySingleSlice(&one).ok()
                            ? out.meta.ParseFromArray(one.begin(), static_cast<int>(one.size()))
                            : [&] {
                                grpc::ProtoBufferReader reader(&copy);
                                return out.meta.ParseFromZeroCopyStream(&reader);
                              }();
    if (!parsed)
      return Status::InvalidArgument("the ModelInferRequest is malformed (it does not parse)");
    auto strings = std::make_shared<google::protobuf::RepeatedPtrField<std::string>>();
    out.meta.mutable_raw_input_contents()->Swap(strings.get());
    for (const std::string& b : *strings) out.raw.push_back({b.data(), b.size(), strings});
    return out;
  }
  grpc::ProtoBufferReader reader(&copy);
  google::protobuf::io::CodedInputStream in(&reader);
  in.SetTotalBytesLimit(INT_MAX);
  std::string rest;  // the other fields, re-encoded as they came
  {
    google::protobuf::io::StringOutputStream rest_stream(&rest);
    google::protobuf::io::CodedOutputStream rest_out(&rest_stream);
    constexpr uint32_t kRawTag =
        WireFormatLite::MakeTag(inference::ModelInferRequest::kRawInputContentsFieldNumber,
                                WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
    for (;;) {
      // A tag or a length takes at most 5 bytes (protobuf's own parser refuses longer ones).
      const int tag_at = in.CurrentPosition();
      const uint32_t tag = in.ReadTag();
      if (tag == 0) break;
      if (in.CurrentPosition() - tag_at > 5)
        return Status::InvalidArgument("the ModelInferRequest is malformed (a tag of " +
                                       std::to_string(in.CurrentPosition() - tag_at) + " bytes)");
      if (tag != kRawTag) {
        const int64_t written = rest_out.ByteCount();
        if (!WireFormatLite::SkipField(&in, tag, &rest_out))
          return Status::InvalidArgument("the ModelInferRequest is malformed (a field of tag " +
                                         std::to_string(tag) +
                                         " is cut short or has an invalid wire type)");
        // The field is copied re-encoded; a size that changed means varints written longer
        // than they need to be, which Tessera refuses rather than reinterprets.
        if (rest_out.ByteCount() - written != in.CurrentPosition() - tag_at)
          return Status::InvalidArgument("the ModelInferRequest is malformed (a field of tag " +
                                         std::to_string(tag) +
                                         " has varints longer than their value needs)");
        continue;
      }
      uint32_t bytes = 0;
      const int length_at = in.CurrentPosition();
      if (!in.ReadVarint32(&bytes) || in.CurrentPosition() - length_at > 5)
        return Status::InvalidArgument(
            "the ModelInferRequest is malformed (raw_input_contents entry " +
            std::to_string(out.raw.size()) + " has no length)");
      const int64_t left = static_cast<int64_t>(wire.Length()) - in.CurrentPosition();
      if (static_cast<int64_t>(bytes) > left)
        return Status::InvalidArgument(
            "the ModelInferRequest is malformed (raw_input_contents entry " +
            std::to_string(out.raw.size()) + " declares " + std::to_string(bytes) + " bytes; " +
            std::to_string(left) + " follow)");
      void* p = AllocateBodyBytes(bytes);
      std::shared_ptr<void> holder(p, [bytes](void* q) { FreeBodyBytes(q, bytes); });
      if (bytes > 0 && !in.ReadRaw(p, static_cast<int>(bytes)))
        return Status::InvalidArgument(
            "the ModelInferRequest is malformed (raw_input_contents "
            "entry " +
            std::to_string(out.raw.size()) + " could not be read)");
      out.raw.push_back({p, bytes, std::move(holder)});
    }
    if (!in.ConsumedEntireMessage())
      return Status::InvalidArgument("the ModelInferRequest is malformed (an invalid tag)");
  }
  if (!out.meta.ParseFromString(rest))
    return Status::InvalidArgument(
        "the ModelInferRequest is malformed (its fields other than raw_input_contents do not "
        "parse)");
  return out;
}

}  // namespace tessera::server
