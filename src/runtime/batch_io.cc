#include "runtime/batch_io.h"

#include <algorithm>
#include <cstring>

#include "runtime/served_model.h"

namespace tessera::runtime {

std::string ExecutableKey(int64_t rows, const std::vector<Shape>& item_shapes) {
  std::string k = std::to_string(rows);
  for (const auto& s : item_shapes) k += ShapeToString(s);
  return k;
}

Result<BatchLayout> LayoutBatch(const ServedModel& m, const std::vector<RequestPtr>& batch) {
  const Graph& g = m.graph();
  BatchLayout l;
  l.batched = m.config().max_batch_size > 0;
  for (const auto& r : batch) l.rows += r->rows;
  l.bucket = l.batched ? m.settings().BucketFor(l.rows) : 1;
  l.index.assign(batch.size(), std::vector<int>(g.inputs.size(), -1));
  for (size_t k = 0; k < batch.size(); ++k)
    for (size_t i = 0; i < g.inputs.size(); ++i)
      for (size_t j = 0; j < batch[k]->input_names.size(); ++j)
        if (batch[k]->input_names[j] == g.inputs[i].name) l.index[k][i] = static_cast<int>(j);
  const InferenceRequest& first = *batch.front();
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    for (size_t k = 0; k < batch.size(); ++k)
      if (l.index[k][i] < 0) return Status::Internal("input '" + g.inputs[i].name + "' lost");
    Shape s = first.inputs[l.index[0][i]].shape();
    if (l.batched) s.erase(s.begin());
    l.items.push_back(s);
  }
  return l;
}

void GatherInputs(const BatchLayout& l, const std::vector<RequestPtr>& batch,
                  const std::vector<uint8_t*>& dst) {
  for (size_t i = 0; i < dst.size(); ++i) {
    uint8_t* at = dst[i];
    size_t row_bytes = 0;
    for (size_t k = 0; k < batch.size(); ++k) {
      const Tensor& src = batch[k]->inputs[l.index[k][i]];
      std::memcpy(at, src.raw(), src.nbytes());
      at += src.nbytes();
      if (batch[k]->rows > 0) row_bytes = src.nbytes() / static_cast<size_t>(batch[k]->rows);
    }
    if (l.batched && l.bucket > l.rows)
      std::memset(at, 0, static_cast<size_t>(l.bucket - l.rows) * row_bytes);
  }
}

Result<std::vector<InferenceResponse>> CutOutputs(const ServedModel& m, const BatchLayout& l,
                                                  const std::vector<RequestPtr>& batch,
                                                  const std::vector<Tensor>& outs,
                                                  const std::vector<TensorSpec>& specs) {
  if (l.batched)
    for (size_t o = 0; o < outs.size(); ++o)
      if (outs[o].rank() == 0 || outs[o].dim(0) != l.bucket)
        return Status::Internal("model '" + m.name() + "': output '" + specs[o].name +
                                "' has shape " + ShapeToString(outs[o].shape()) +
                                ", without the batch dimension max_batch_size > 0 requires");
  std::vector<InferenceResponse> responses(batch.size());
  int64_t offset = 0;
  for (size_t k = 0; k < batch.size(); ++k) {
    const InferenceRequest& r = *batch[k];
    InferenceResponse& resp = responses[k];
    resp.batch_rows = l.rows;
    for (size_t o = 0; o < outs.size(); ++o) {
      const std::string& name = specs[o].name;
      if (!r.outputs.empty() &&
          std::find(r.outputs.begin(), r.outputs.end(), name) == r.outputs.end())
        continue;
      resp.output_names.push_back(name);
      resp.outputs.push_back(l.batched ? outs[o].SliceRows(offset, offset + r.rows) : outs[o]);
    }
    offset += r.rows;
  }
  return responses;
}

}  // namespace tessera::runtime
