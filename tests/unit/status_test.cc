#include "tessera/core/status.h"

#include <gtest/gtest.h>

#include "tessera/core/tensor.h"

namespace tessera {
namespace {

TEST(Status, OkIsCheapAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(Status, CarriesCodeMessageAndContext) {
  Status s = Status::NotFound("no model 'x'").WithContext("load");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "NOT_FOUND: load: no model 'x'");
}

TEST(Status, EveryCodeMapsToOneHttpAndGrpcCode) {
  EXPECT_EQ(HttpStatusOf(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(StatusCode::kUnavailable), 503);
  EXPECT_EQ(GrpcCodeOf(StatusCode::kInvalidArgument), 3);
  EXPECT_EQ(GrpcCodeOf(StatusCode::kNotFound), 5);
  EXPECT_EQ(GrpcCodeOf(StatusCode::kResourceExhausted), 8);
  EXPECT_EQ(GrpcCodeOf(StatusCode::kUnimplemented), 12);
}

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Status UseHalf(int x, int* out) {
  TESSERA_ASSIGN_OR_RETURN(*out, Half(x));
  return Status::OK();
}

TEST(Result, AssignOrReturnPropagatesErrors) {
  int v = 0;
  EXPECT_TRUE(UseHalf(8, &v).ok());
  EXPECT_EQ(v, 4);
  EXPECT_EQ(UseHalf(3, &v).code(), StatusCode::kInvalidArgument);
}

TEST(DataType, NamesRoundTripIncludingTritonPrefix) {
  for (DataType t : {DataType::kFloat32, DataType::kInt64, DataType::kBool, DataType::kBFloat16}) {
    auto back = DataTypeFromName(DataTypeName(t));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, t);
  }
  EXPECT_EQ(*DataTypeFromName("TYPE_FP16"), DataType::kFloat16);
  EXPECT_FALSE(DataTypeFromName("FLOAT").ok());
}

TEST(Tensor, AllocateIsZeroedAlignedAndClonesDeeply) {
  Tensor t = Tensor::Allocate(DataType::kFloat32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], 0.0f);
  Tensor c = t.Clone();
  c.data<float>()[0] = 5;
  EXPECT_EQ(t.data<float>()[0], 0.0f);
  Tensor r = t.Reshaped({3, 2});
  r.data<float>()[1] = 7;
  EXPECT_EQ(t.data<float>()[1], 7.0f);  // reshape shares storage
}

}  // namespace
}  // namespace tessera
