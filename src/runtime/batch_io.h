// Moving a batch's tensors in and out, shared by the CPU and GPU executors: where each request's
// inputs are, gathering their rows into batch inputs (padded to the bucket), and cutting the
// batch outputs back into per-request responses.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/engine/engine.h"
#include "tessera/runtime/request.h"

namespace tessera::runtime {

class ServedModel;

struct BatchLayout {
  bool batched = false;  // max_batch_size > 0: dim 0 is the batch
  int64_t rows = 0;      // the requests' rows together
  int64_t bucket = 1;    // the compiled batch size they run as (rows padded up)
  // index[k][i]: where graph input i is among request k's inputs.
  std::vector<std::vector<int>> index;
  std::vector<Shape> items;  // per graph input, the shape of one row
};

// Names an executable: its batch rows and per-row input shapes.
std::string ExecutableKey(int64_t rows, const std::vector<Shape>& item_shapes);

// Internal when an input is missing (admission checked every request has every input).
Result<BatchLayout> LayoutBatch(const ServedModel& m, const std::vector<RequestPtr>& batch);

// Writes graph input i of every request, one after another, into dst[i], which holds `bucket`
// rows; rows past the requests' are zeroed.
void GatherInputs(const BatchLayout& l, const std::vector<RequestPtr>& batch,
                  const std::vector<uint8_t*>& dst);

// The responses of a batch from its outputs (rows cut per request, sharing the outputs'
// storage; only the outputs each request asked for). Internal when an output lacks the batch
// dimension a batched model needs.
Result<std::vector<InferenceResponse>> CutOutputs(const ServedModel& m, const BatchLayout& l,
                                                  const std::vector<RequestPtr>& batch,
                                                  const std::vector<Tensor>& outs,
                                                  const std::vector<TensorSpec>& specs);

}  // namespace tessera::runtime
