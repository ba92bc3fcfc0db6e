// Where a result came from: the commit, the machine and the time, for bench/results files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tessera::cli {

// $TESSERA_COMMIT, else `git rev-parse HEAD` of the source tree (with "-dirty" when tracked
// files changed), else "unknown".
std::string Commit();
// {"cpu", "cores", "kernel"} of this machine.
nlohmann::json Machine();
// The current time as ISO 8601 UTC, e.g. "2026-11-23T10:00:00Z".
std::string UtcNow();

}  // namespace tessera::cli
