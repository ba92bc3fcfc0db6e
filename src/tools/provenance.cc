#include "tools/provenance.h"

#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>

#ifndef TESSERA_SOURCE_DIR
#define TESSERA_SOURCE_DIR "."
#endif

namespace tessera::cli {
namespace {

using nlohmann::json;

std::string Run(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

std::string Commit() {
  if (const char* c = std::getenv("TESSERA_COMMIT")) return c;
  const std::string dir = TESSERA_SOURCE_DIR;
  std::string c = Run("git -C '" + dir + "' rev-parse HEAD 2>/dev/null");
  if (c.empty()) return "unknown";
  if (!Run("git -C '" + dir + "' status --porcelain -uno 2>/dev/null").empty()) c += "-dirty";
  return c;
}

json Machine() {
  std::string cpu = "unknown";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  uname(&u);
  return {{"cpu", cpu}, {"cores", std::thread::hardware_concurrency()}, {"kernel", u.release}};
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace tessera::cli
