// `tessera`: the command-line entry point. Subcommands are added by later parts (serve, bench...).
#include <fmt/core.h>

#include "tessera/engine/engine.h"
#include "tools/commands.h"

#ifdef TESSERA_HAVE_CUDA
#include "gpu/device_info.h"
#include "gpu/slice_providers.h"
#endif

int main(int argc, char** argv) {
  CLI::App app{"Tessera: a multi-tenant DNN inference server (see README.md)", "tessera"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tessera 0.1.0");
  std::vector<std::pair<CLI::App*, tessera::cli::Runner>> cmds;
  namespace cli = tessera::cli;
  const struct {
    const char* name;
    const char* help;
    cli::Runner (*setup)(CLI::App&);
  } kCommands[] = {
      {"serve", "Serve a model repository over KServe v2 HTTP + gRPC, with Prometheus metrics",
       cli::SetupServe},
      {"zoo", "Write standard models as ONNX into a model repository", cli::SetupZoo},
      {"infer", "Run one model once (or repeatedly) and report", cli::SetupInfer},
      {"bench", "Open-loop multi-model load generator for KServe v2 servers; SLO goodput sweeps",
       cli::SetupBench},
      {"sink", "A KServe v2 endpoint that answers every inference at once (to measure clients)",
       cli::SetupSink},
      {"plan", "Plan slices per GPU for models (rate, SLO, profile): tessera, nexus or igniter",
       cli::SetupPlan},
      {"profile", "Measure a model's latency by batch x slice size and its memory (a plan input)",
       cli::SetupProfile},
      {"simulate", "Plan a scenario and run the plan on a discrete-event simulator (virtual time)",
       cli::SetupSimulate},
      {"slice", "Show or change a served model's slice live", cli::SetupSlice},
      {"colocate", "Calibrate the planner's interference model: models side by side on the cores",
       cli::SetupColocate},
      {"gpu-bench", "GPU data-path and completion micro-benchmarks (CUDA builds, on a GPU)",
       cli::SetupGpuBench},
  };
  for (const auto& c : kCommands) {
    auto* sub = app.add_subcommand(c.name, c.help);
    cmds.emplace_back(sub, c.setup(*sub));
  }
  auto* ops = app.add_subcommand("ops", "List the ONNX ops the engine supports");
  cmds.emplace_back(ops, [] {
    for (const auto& op : tessera::SupportedOps()) fmt::print("{}\n", op);
    return 0;
  });
  auto* devices = app.add_subcommand("devices", "List GPUs visible to Tessera");
  cmds.emplace_back(devices, [] {
#ifdef TESSERA_HAVE_CUDA
    auto list = tessera::gpu::ListDevices();
    if (!list.ok()) {
      fmt::print("no GPU: {}\n", list.status().message());
      return 0;
    }
    for (const auto& d : *list) {
      fmt::print("gpu {}: {} (sm_{}{}, {} SMs, {} MiB, {} async copy engines)\n", d.index, d.name,
                 d.major, d.minor, d.sm_count, d.total_memory_bytes >> 20, d.async_engines);
      // How --sharing=green would cut it: one split into 8-SM groups.
      auto green = tessera::gpu::CreateSliceProvider("green", d.index);
      if (green.ok())
        fmt::print("  green contexts: {}\n", (*green)->layout().Describe());
      else
        fmt::print("  green contexts: unavailable ({})\n", green.status().message());
      // And whether --sharing=mps can work here (an MPS daemon, and its start-up probe).
      auto mps = tessera::gpu::CreateSliceProvider("mps", d.index);
      if (mps.ok())
        fmt::print("  mps: SM-count contexts available\n");
      else
        fmt::print("  mps: unavailable ({})\n", mps.status().message());
    }
    if (list->empty()) fmt::print("no GPU visible\n");
#else
    fmt::print("this build has no CUDA support (configure with nvcc present)\n");
#endif
    return 0;
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here with 0; any bad option or value is bad input: exit 2, as
    // every subcommand's own input checks do (CLI11's own codes would be 100+).
    return app.exit(e) == 0 ? 0 : 2;
  }
  for (auto& [sub, run] : cmds)
    if (sub->parsed()) return run();
  return 1;
}
