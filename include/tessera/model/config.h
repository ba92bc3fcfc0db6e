// A model's configuration: what Tessera uses of Triton's config.pbtxt, plus Tessera's own
// settings, which ride in the standard `parameters` map so a Triton config stays valid.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tessera/model/graph.h"

namespace tessera {

struct TensorConfig {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> dims;  // without the batch dim when max_batch_size > 0; -1 = variable
  bool optional = false;      // inputs only
};

// What happens to a request whose queue timeout expires (Triton's ModelQueuePolicy).
struct QueuePolicy {
  bool delay_on_timeout = false;    // TimeoutAction DELAY (keep it, at lowest priority) vs REJECT
  uint64_t default_timeout_us = 0;  // 0: no timeout
  bool allow_timeout_override = false;
  uint32_t max_queue_size = 0;  // 0: unbounded (the server's own bound still applies)
};

struct DynamicBatching {
  std::vector<int> preferred_batch_sizes;
  uint64_t max_queue_delay_us = 0;
  bool preserve_ordering = false;
  uint64_t priority_levels = 0;  // 0: one level
  uint64_t default_priority_level = 0;
  QueuePolicy default_queue_policy;
  std::map<uint64_t, QueuePolicy> priority_queue_policy;
};

struct InstanceGroup {
  enum class Kind { kAuto, kGpu, kCpu, kModel };
  std::string name;
  int count = 1;
  Kind kind = Kind::kAuto;
  std::vector<int> gpus;
};

struct VersionPolicy {
  enum class Kind { kLatest, kAll, kSpecific };
  Kind kind = Kind::kLatest;
  uint32_t latest = 1;            // kLatest: how many of the newest versions
  std::vector<int64_t> versions;  // kSpecific
  // The versions to serve out of those present (sorted ascending). NotFound names what is
  // missing when a specific version is absent or nothing is present.
  Result<std::vector<int64_t>> Select(const std::vector<int64_t>& available) const;
};

// One warm-up sample (Triton's model_warmup): run at load, before the model is ready.
struct WarmupSample {
  struct Input {
    DataType dtype = DataType::kInvalid;
    std::vector<int64_t> dims;  // without the batch dim
    bool random = false;        // else zeros (input_data_file is read when set)
    std::string data_file;      // relative to the model's warmup/ directory
  };
  std::string name;
  int batch_size = 1;
  int count = 1;
  std::map<std::string, Input> inputs;
};

struct ModelConfig {
  std::string name;
  std::string platform;  // "onnxruntime_onnx" for ONNX models
  std::string backend;   // "onnxruntime" (Triton's other way of saying it)
  int max_batch_size = 0;
  std::vector<TensorConfig> inputs, outputs;
  std::vector<InstanceGroup> instance_groups;
  std::optional<DynamicBatching> dynamic_batching;
  VersionPolicy version_policy;
  std::vector<WarmupSample> warmup;
  std::map<std::string, std::string> parameters;  // Tessera settings (slo_ms, ...)
  std::string default_model_filename = "model.onnx";
  // The whole parsed config in Triton's binary form, fields Tessera ignores included; what
  // config requests return (see ModelConfigProtoBytes).
  std::string proto_bytes;

  // Tessera's settings from `parameters`, validated by ValidateModelConfig.
  std::optional<double> SloMs() const;
  // The GPU slice a model instance asks for: parameter "slice_sms" (SMs) or "slice_percent"
  // (of the GPU's SMs, 0-100]; at most one. Resolved against a GPU's granularity at load
  // (runtime/slices.h). nullopt when neither is set or the value is not a positive number.
  struct Slice {
    int sms = 0;         // > 0 when given in SMs
    double percent = 0;  // > 0 when given as a percentage
  };
  std::optional<Slice> SliceRequest() const;
  // Summed over instance groups, a group's count on each GPU it lists (Triton's rule); 1 when none.
  int InstanceCount() const;
  // Per instance, in order: the GPU its group lists (-1: the group lists none).
  std::vector<int> InstanceGpus() const;
};

// Parses config.pbtxt text (protobuf text format, Triton's field names). InvalidArgument says
// where the text is wrong. Fields Tessera does not use are accepted and kept in proto_bytes.
Result<ModelConfig> ParseModelConfig(const std::string& text);
// Checks what Tessera acts on: platform, batch sizes, priorities, instance counts, parameters.
Status ValidateModelConfig(const ModelConfig& config);
// Renders a config back to config.pbtxt text.
std::string FormatModelConfig(const ModelConfig& config);
// The config in Triton's binary wire form: proto_bytes with the fields this struct holds
// overwritten from it (so auto-completed inputs and outputs show).
std::string ModelConfigProtoBytes(const ModelConfig& config);
// The config as JSON in Triton's shape (field names as in config.pbtxt, enums by name, 64-bit
// integers as numbers), for HTTP config requests.
std::string ModelConfigJson(const ModelConfig& config);
// Derives a config from an ONNX graph (name, inputs/outputs, max_batch_size from a dynamic
// leading dim) for a model directory without config.pbtxt.
ModelConfig DeriveModelConfig(const std::string& name, const Graph& graph, int max_batch_size);
// Fills what a config.pbtxt left out (inputs, outputs, platform) from the graph, then checks
// that the config and the graph agree on every input and output (name, type, dims). Triton's
// auto-complete, done always.
Status CompleteModelConfig(const Graph& graph, ModelConfig* config);

}  // namespace tessera
