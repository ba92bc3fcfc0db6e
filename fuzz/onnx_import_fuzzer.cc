// libFuzzer target: arbitrary bytes through the ONNX importer and, when they import, through
// shape inference and constant folding at batch 1 and 3. Any crash, leak or sanitizer report is
// a bug: bad models must come back as a Status.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/prepare.h"
#include "tessera/model/onnx_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto graph = tessera::ImportOnnx(std::string(reinterpret_cast<const char*>(data), size));
  if (!graph.ok()) return 0;
  for (int64_t batch : {1, 3}) {
    tessera::CompileOptions options;
    options.batch = batch;
    auto prepared = tessera::PrepareGraph(*graph, options);
    (void)prepared;
  }
  return 0;
}
