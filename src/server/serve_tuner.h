// `tessera serve --tune`: the planner's online tuner (planner::Tuner) run on the live server.
//
// Once per window it reads every tuned model's statistics (requests arrived, answered within
// the SLO) and each of its instances' counters (batches, their rows and compute time), hands
// them to the tuner as one window's observation (each instance is one slice of the fleet,
// credited with the model's traffic in proportion to the rows it ran: the instances share one
// queue), and applies what comes back through the admin API's live calls: an instance resized
// (ModelManager::ChangeInstance: compute threads for CPU models, SMs make-before-break on a
// sliced GPU), added (AddInstance: a replica, or a model's or consolidated slice's new place on
// another GPU) or removed (RemoveInstance, after the window's new instances serve, and not at
// all for a model whose new instance could not be made). Routing actions are not needed: the
// instances pull from one queue. The tuner's hysteresis (bands, Poisson noise filter,
// cool-down, shrink after several quiet windows) is the simulator's, unchanged. With each
// resize or new instance goes that instance's batch limit (the largest batch whose queue meets
// the SLO on its slice, as the simulator applies it); the batcher still trims each batch to
// its requests' deadlines below it.
//
// A model is tuned when it is ready with one version, has an `slo_ms` parameter and a
// `profile` parameter (a `tessera profile` file: latency by batch x slice size, relative to the
// model's directory) and, on a GPU, a slice for every instance. Each device kind is one tuner's
// fleet: the CPU (slices are threads, 1 at a time, up to its cores) and the sliced GPUs (slices
// are SMs in whole groups).
//
// Thread-safe: Tick runs on the tuner's thread (Start) or on the caller's (tests).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/planner/tuner.h"
#include "tessera/runtime/model_manager.h"

namespace tessera::server {

struct ServeTunerOptions {
  double window_s = 5;  // seconds between decisions
  planner::TunerOptions tuner;
  int cpu_cores = 0;  // the CPU fleet's size in threads; 0: the machine's
};

class ServeTuner {
 public:
  ServeTuner(ModelManager* manager, ServeTunerOptions options);
  ~ServeTuner();
  ServeTuner(const ServeTuner&) = delete;
  ServeTuner& operator=(const ServeTuner&) = delete;

  // A thread that calls Tick every window_s seconds until Stop (or destruction).
  void Start();
  void Stop();
  // One window of `window_s` seconds ending now: the models are looked up again (a load,
  // unload, new version or changed profile file restarts the tuner on the new set), the window
  // observed, the actions applied and logged. The first window after a (re)start only takes
  // the statistics' baseline.
  void Tick(double window_s);
  // Prometheus text: tessera_tuner_tuned{model} (1 tuned, 0 not) and
  // tessera_tuner_resizes_total{model,direction="grow"|"shrink"|"add"|"remove"|"refused"}.
  std::string PrometheusText() const;

 private:
  struct Fleet;
  struct ModelInfo {  // a ready model: tuned, or why not
    std::string name;
    bool tuned = false;
    std::string reason;
  };
  void Rebuild();
  ModelManager* manager_;
  ServeTunerOptions opt_;
  mutable std::mutex mu_;
  std::string signature_;
  std::vector<ModelInfo> models_;
  std::vector<std::unique_ptr<Fleet>> fleets_;
  struct Counts {
    uint64_t grow = 0, shrink = 0, add = 0, remove = 0, refused = 0;
  };
  std::map<std::string, Counts> counts_;  // by model
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera::server
