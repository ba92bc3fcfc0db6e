// Engine: compiles a graph for one batch size into an Executable. Backends: cpu (oneDNN + own
// kernels), sim (computes nothing; time from a latency profile), cuda (later).
#pragma once

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tessera/core/clock.h"
#include "tessera/model/graph.h"

namespace tessera {

// Constants derived from a model's weights (folded BatchNorm, repacked or transformed weights),
// shared by every executable compiled from the same model: the server compiles one per batch
// size and instance, and without sharing each would hold its own copy of the weights.
//
// Keys are the identities of the source tensors' storage, which is only sound while that
// storage cannot be freed and reused: the cache keeps the model's initializers alive and treats
// them, and whatever it has made, as stable; a derivation from anything else is computed and
// not cached. Thread-safe.
class ConstantCache {
 public:
  explicit ConstantCache(const Graph& model);
  // The tensor cached under (tag, sources), or make()'s result, cached when every source is
  // stable. Tags name the derivation and its parameters ("bn-weight eps=1e-5", a layout, ...).
  Tensor GetOrMake(const std::string& tag, std::initializer_list<const Tensor*> sources,
                   const std::function<Tensor()>& make);
  bool IsStable(const Tensor& t) const;
  size_t bytes() const;    // held by derived entries
  size_t entries() const;  // derived entries

 private:
  mutable std::mutex mu_;
  std::vector<Tensor> anchors_;  // the model's initializers, kept alive
  std::unordered_set<const void*> stable_;
  std::unordered_map<std::string, Tensor> made_;
  size_t bytes_ = 0;
};

struct CompileOptions {
  int64_t batch = 1;                          // replaces a dynamic leading dim
  std::map<std::string, Shape> input_shapes;  // full shapes for inputs with other dynamic dims
  bool optimize = true;                       // fusions (BN folding, activations, residuals)
  bool profile = false;                       // time every step (see OpProfileMs)
  bool winograd = true;     // CPU: Winograd F(2x2,3x3) for eligible 3x3 convs (else direct conv)
  bool packed_gemm = true;  // CPU: own packed AVX2 GEMM for constant-weight MatMuls (else oneDNN)
  // GPU engines: the SMs of the slice the executable will run on (tells cuBLASLt to size its
  // kernels for them); 0: the engine's default (the whole GPU).
  int sm_count_target = 0;
  // Shares derived constants across compiles of the same model (see ConstantCache); null: none.
  std::shared_ptr<ConstantCache> constants;
};

struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape shape;
};

struct ExecutableInfo {
  std::vector<TensorSpec> inputs;        // in graph-input order, concrete shapes
  std::vector<TensorSpec> outputs;       // in graph-output order
  size_t weight_bytes = 0;               // constants held by the executable (incl. repacked copies)
  size_t activation_bytes = 0;           // peak activation memory: the planned arena
  size_t activation_bytes_no_reuse = 0;  // what the same values would take without reuse
  int nodes = 0;                         // nodes after optimization
  int fused = 0;                         // patterns fused
  int folded = 0;                        // nodes removed by constant folding / dead-code removal
};

// A model compiled for fixed input shapes. Run is not thread-safe: one call at a time per
// Executable (the runtime keeps one per model instance). Inputs are only read during Run.
class Executable {
 public:
  virtual ~Executable() = default;
  // `inputs` in graph-input order, exactly the dtypes/shapes in info().inputs (InvalidArgument
  // names the first mismatch). On success `outputs` holds newly owned tensors.
  virtual Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) = 0;
  virtual const ExecutableInfo& info() const = 0;
  // Per-op-type time (ms, summed over every Run since compile) when compiled with
  // CompileOptions::profile; empty otherwise.
  virtual std::map<std::string, double> OpProfileMs() const { return {}; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  // Where its executables keep their memory, for per-device budgets: "cpu", "cuda:0", ...
  virtual std::string device() const { return "cpu"; }
  // That device's memory the engine may use (0: not known; the caller's budget decides).
  virtual int64_t memory_capacity_bytes() const { return 0; }
  // Compiles a copy of `graph`. Unimplemented for unsupported ops (naming op and node);
  // InvalidArgument for inconsistent shapes or types.
  virtual Result<std::unique_ptr<Executable>> Compile(const Graph& graph,
                                                      const CompileOptions& options) = 0;
};

// CPU backend. `threads` <= 0 uses every core. The thread count is process-wide (OpenMP).
std::unique_ptr<Engine> CreateCpuEngine(int threads = 0);
// Compute threads (OpenMP) for executables run from the calling thread from now on; the
// runtime gives each executor thread its share of the cores.
void SetComputeThreadsForCurrentThread(int threads);
// What the calling thread's next Run will use (the setting above, or every core).
int ComputeThreadsForCurrentThread();

// Latency profile for the sim backend: latency in microseconds by batch size; other batch sizes
// are linearly interpolated (extrapolated from the last two points beyond the largest).
struct LatencyProfile {
  std::map<int64_t, double> latency_us;
  Result<double> LatencyUs(int64_t batch) const;
  // Parses JSON {"latency_us": {"1": 100, "8": 400}}.
  static Result<LatencyProfile> FromJson(const std::string& text);
};

// Sim backend: Run computes nothing (zero-filled outputs of the right shapes) and takes the
// profile's latency on `clock` (sleeps on a SystemClock, advances a ManualClock).
std::unique_ptr<Engine> CreateSimEngine(LatencyProfile profile, Clock* clock);

// Names of every op the CPU backend supports.
std::vector<std::string> SupportedOps();

}  // namespace tessera
