// Deterministic synthetic model inputs for the CLI (`tessera infer`, `tessera profile`).
#pragma once

#include <cstdint>

#include "tessera/core/tensor.h"
#include "tessera/engine/engine.h"

namespace tessera::cli {

// Floats U(-1, 1); integer inputs named like a mask are all 1, other integer inputs (token
// ids) are in [0, 100). The same seed gives the same tensor.
Tensor SyntheticInput(const TensorSpec& spec, uint64_t seed);

}  // namespace tessera::cli
