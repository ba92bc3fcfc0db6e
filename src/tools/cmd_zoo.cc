#include <fmt/core.h>

#include "tessera/zoo/zoo.h"
#include "tools/commands.h"

namespace tessera::cli {

Runner SetupZoo(CLI::App& app) {
  struct Opts {
    std::string out;
    std::string models;
    uint64_t seed = 0;
    bool list = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--out", o->out, "Repository directory to write (created if missing)");
  app.add_option("--models", o->models,
                 "Comma-separated model names (default: the demo set; 'all' for every model)");
  app.add_option("--seed", o->seed, "Weight seed; the same seed always gives the same files")
      ->default_val(0);
  app.add_flag("--list", o->list, "List the available models and exit");
  return [o]() {
    if (o->list) {
      for (const auto& e : zoo::Entries())
        fmt::print("{:<14} {}{}\n", e.name, e.description, e.in_demo ? "  [demo]" : "");
      return 0;
    }
    if (o->out.empty()) {
      fmt::print(stderr, "error: --out DIR is required (or --list)\n");
      return 2;
    }
    std::vector<std::string> names;
    if (o->models.empty() || o->models == "demo") {
      for (const auto& e : zoo::Entries())
        if (e.in_demo) names.push_back(e.name);
    } else if (o->models == "all") {
      for (const auto& e : zoo::Entries()) names.push_back(e.name);
    } else {
      size_t start = 0;
      while (start <= o->models.size()) {
        size_t end = o->models.find(',', start);
        if (end == std::string::npos) end = o->models.size();
        if (end > start) names.push_back(o->models.substr(start, end - start));
        start = end + 1;
      }
    }
    fmt::print("writing {} model(s) to {}\n", names.size(), o->out);
    Status st = zoo::WriteRepository(o->out, names, o->seed,
                                     [](const std::string& line) { fmt::print("  {}\n", line); });
    if (!st.ok()) {
      fmt::print(stderr, "error: {}\n", st.ToString());
      return 1;
    }
    return 0;
  };
}

}  // namespace tessera::cli
