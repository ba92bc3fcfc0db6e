// Reading and writing NumPy .npy files (format 1.0/2.0, little-endian, C order).
#pragma once

#include <string>

#include "tessera/core/tensor.h"

namespace tessera {

// Loads a .npy file. NotFound if the file is missing; InvalidArgument if it is not a valid
// C-ordered little-endian .npy of a supported dtype.
Result<Tensor> LoadNpy(const std::string& path);
// Parses .npy bytes already in memory.
Result<Tensor> ParseNpy(const std::string& bytes);
// Writes `t` to `path` as .npy v1.0.
Status SaveNpy(const std::string& path, const Tensor& t);

}  // namespace tessera
