// The gRPC ModelInfer wire reader: every field but raw_input_contents parses as protobuf would;
// each raw entry is copied from the receive slices (however they are cut) into body memory;
// malformed messages are clear errors.
#include "server/grpc_wire.h"

#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "counting_body_memory.h"

namespace tessera::server {
namespace {

inference::ModelInferRequest Sample() {
  inference::ModelInferRequest r;
  r.set_model_name("bert_small");
  r.set_model_version("2");
  r.set_id("req-7");
  (*r.mutable_parameters())["priority"].set_uint64_param(3);
  auto* in = r.add_inputs();
  in->set_name("input_ids");
  in->set_datatype("INT64");
  in->add_shape(1);
  in->add_shape(128);
  auto* in2 = r.add_inputs();
  in2->set_name("attention_mask");
  in2->set_datatype("INT64");
  in2->add_shape(1);
  in2->add_shape(128);
  r.add_outputs()->set_name("pooler_output");
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 1);
  r.add_raw_input_contents(big);
  r.add_raw_input_contents("");  // an empty entry is kept (its input is empty)
  r.add_raw_input_contents("tail bytes");
  return r;
}

// The message's bytes as gRPC might hand them over: cut into slices of `cut` bytes.
grpc::ByteBuffer Wire(const std::string& bytes, size_t cut) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += cut)
    slices.emplace_back(bytes.data() + at, std::min(cut, bytes.size() - at));
  return grpc::ByteBuffer(slices.data(), slices.size());
}

TEST(GrpcWire, ReadsEveryFieldAndEachRawEntryAcrossSliceCuts) {
  const inference::ModelInferRequest want = Sample();
  const std::string bytes = want.SerializeAsString();
  // Both ways: walked field by field into body memory, and (no body memory installed: every
  // message is under its threshold) parsed whole by protobuf.
  for (bool walk : {true, false})
    for (size_t cut : {bytes.size(), size_t{4096}, size_t{7}, size_t{1}}) {
      std::unique_ptr<testing::CountingBodyMemory> memory;
      if (walk) memory = std::make_unique<testing::CountingBodyMemory>(0);
      if (cut == 1 && bytes.size() > 400000) continue;
      auto got = ReadInferRequest(Wire(bytes, cut));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      inference::ModelInferRequest meta = want;
      meta.clear_raw_input_contents();
      EXPECT_EQ(got->meta.SerializeAsString(), meta.SerializeAsString()) << cut << walk;
      EXPECT_EQ(got->meta.raw_input_contents_size(), 0);
      ASSERT_EQ(got->raw.size(), 3u);
      for (int i = 0; i < 3; ++i) {
        const std::string& w = want.raw_input_contents(i);
        ASSERT_EQ(got->raw[i].bytes, w.size()) << i;
        EXPECT_EQ(std::string(static_cast<const char*>(got->raw[i].data), w.size()), w) << i;
        EXPECT_NE(got->raw[i].holder, nullptr);
        if (walk && w.size() > 0) {
          EXPECT_TRUE(memory->Holds(got->raw[i].data)) << i;
        }
      }
    }
}

TEST(GrpcWire, RawEntriesLandInBodyMemory) {
  // A GPU server installs its pinned pool as body memory: the large entries come from it and
  // return to it when the last tensor viewing them is gone.
  testing::CountingBodyMemory memory(1024);
  {
    auto got = ReadInferRequest(Wire(Sample().SerializeAsString(), 65536));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->raw.size(), 3u);
    EXPECT_TRUE(memory.Holds(got->raw[0].data));   // 300 kB: body memory
    EXPECT_FALSE(memory.Holds(got->raw[2].data));  // 10 bytes: the heap
    EXPECT_EQ(memory.blocks.size(), 1u);
  }
  EXPECT_EQ(memory.frees, 1);
  EXPECT_TRUE(memory.blocks.empty());
}

TEST(GrpcWire, MalformedMessagesAreClearErrors) {
  testing::CountingBodyMemory memory(0);  // every message walked field by field
  const std::string good = Sample().SerializeAsString();
  auto expect_bad = [](const std::string& bytes, const std::string& what) {
    auto got = ReadInferRequest(Wire(bytes, 1000));
    ASSERT_FALSE(got.ok()) << what;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << what;
    EXPECT_NE(got.status().message().find("malformed"), std::string::npos)
        << what << ": " << got.status().ToString();
  };
  // Cut inside the big raw entry: it declares more bytes than follow.
  expect_bad(good.substr(0, good.size() / 2), "truncated raw entry");
  // A raw entry whose length says 2 GB.
  expect_bad(std::string("\x3a\xff\xff\xff\xff\x07", 6) + "abc", "huge raw length");
  // A string field cut short.
  expect_bad(std::string("\x0a\x10short", 7), "truncated model_name");
  // Tag 0 is not a tag.
  expect_bad(std::string("\x00\x01", 2), "tag zero");
  // An end-group marker with no group.
  expect_bad(std::string("\x0c", 1), "stray end-group");
  // A field other than raw_input_contents with bytes that are not its message.
  expect_bad(std::string("\x2a\x02\xff\xff", 4), "inputs[0] is garbage");
  // Varints longer than their value needs (protobuf's parser refuses a 6-byte tag; the
  // reader refuses any it would have to re-encode).
  expect_bad(std::string("\x8a\x80\x80\x80\x80\x00\x01x", 8), "6-byte tag");
  expect_bad(std::string("\x0a\x83\x00"
                         "abc",
                         6),
             "2-byte length of 3");
  expect_bad(std::string("\x3a\x83\x80\x80\x80\x80\x00"
                         "abc",
                         10),
             "6-byte raw length");
  // Parsed whole by protobuf (under the body memory's threshold): the same kind of error.
  {
    testing::CountingBodyMemory high(1 << 30);
    expect_bad(good.substr(0, good.size() / 2), "truncated, parsed whole");
    expect_bad(std::string("\x00\x01", 2), "tag zero, parsed whole");
  }
  // The empty message is a valid (empty) request.
  auto empty = ReadInferRequest(Wire("", 1));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->raw.empty());
}

}  // namespace
}  // namespace tessera::server
