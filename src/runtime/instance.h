// One model instance: its executables (one per batch size and input shape, compiled from the
// model's graph, weights shared through the model's ConstantCache) and the work of running a
// batch: gather the requests' rows into batch inputs, run, cut the outputs per request.
// Used by exactly one executor thread.
#pragma once

#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/engine/engine.h"
#include "tessera/runtime/request.h"

namespace tessera::runtime {

class ServedModel;

class Instance {
 public:
  Instance(ServedModel* model, int index) : model_(model), index_(index) {}
  int index() const { return index_; }
  // Compiles every batch size whose shapes the config fixes, runs each once (seeding the
  // latency estimate) and runs the config's warm-up samples.
  Status Warmup();
  // Runs `batch` (requests batchable together) and answers every request.
  void Execute(std::vector<RequestPtr> batch);
  size_t memory_bytes() const;
  // True when the config fixes every input dim (besides the batch): the executables for every
  // batch size can be compiled at warm-up and no request can need another.
  static bool ShapesFixed(const ServedModel& m);

 private:
  // The executable for `rows` rows (a bucket) with per-row input shapes `item_shapes`.
  Result<Executable*> ExecutableFor(int64_t rows, const std::vector<Shape>& item_shapes);
  Result<std::vector<Tensor>> RunOnce(int64_t rows, std::vector<Tensor> inputs);
  Status WarmupSamples();

  ServedModel* model_;
  int index_;
  struct Cached {
    std::unique_ptr<Executable> exe;
    std::list<std::string>::iterator lru;
  };
  std::map<std::string, Cached> exes_;
  std::list<std::string> lru_;          // most recent first
  std::atomic<size_t> arena_bytes_{0};  // activation arenas of exes_ (read by other threads)
};

}  // namespace tessera::runtime
