#include "tessera/core/npy.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace tessera {
namespace {

TEST(Npy, SaveThenLoadRoundTrips) {
  Tensor t = Tensor::Allocate(DataType::kInt64, {2, 3});
  for (int i = 0; i < 6; ++i) t.data<int64_t>()[i] = i * 10 - 7;
  auto path = std::filesystem::temp_directory_path() / "tessera_npy_test.npy";
  ASSERT_TRUE(SaveNpy(path.string(), t).ok());
  auto back = LoadNpy(path.string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->dtype(), DataType::kInt64);
  EXPECT_EQ(back->shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back->data<int64_t>()[i], i * 10 - 7);
  std::filesystem::remove(path);
}

TEST(Npy, ScalarShapeRoundTrips) {
  Tensor t = Tensor::Allocate(DataType::kFloat32, {});
  t.data<float>()[0] = 2.5f;
  auto path = std::filesystem::temp_directory_path() / "tessera_npy_scalar.npy";
  ASSERT_TRUE(SaveNpy(path.string(), t).ok());
  auto back = LoadNpy(path.string());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->shape().empty());
  EXPECT_EQ(back->data<float>()[0], 2.5f);
  std::filesystem::remove(path);
}

TEST(Npy, RejectsGarbageTruncationAndFortranOrder) {
  EXPECT_EQ(ParseNpy("hello").status().code(), StatusCode::kInvalidArgument);
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  std::string good = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(h.size()) + '\0' + h;
  EXPECT_NE(ParseNpy(good + std::string(8, '\0')).status().message().find("truncated"),
            std::string::npos);
  std::string f = "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }";
  std::string fort = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(f.size()) + '\0' + f +
                     std::string(4, '\0');
  EXPECT_NE(ParseNpy(fort).status().message().find("Fortran"), std::string::npos);
  EXPECT_EQ(LoadNpy("/nonexistent/x.npy").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
