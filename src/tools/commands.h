// Subcommands of the `tessera` CLI. Each Setup* registers its options on the app and returns
// the function that runs it (exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace tessera::cli {

using Runner = std::function<int()>;
Runner SetupZoo(CLI::App& app);
Runner SetupInfer(CLI::App& app);
Runner SetupServe(CLI::App& app);
Runner SetupBench(CLI::App& app);
Runner SetupSink(CLI::App& app);
Runner SetupPlan(CLI::App& app);
Runner SetupProfile(CLI::App& app);
Runner SetupSimulate(CLI::App& app);
Runner SetupSlice(CLI::App& app);
Runner SetupColocate(CLI::App& app);
Runner SetupGpuBench(CLI::App& app);

}  // namespace tessera::cli
