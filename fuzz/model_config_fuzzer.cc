// libFuzzer target: arbitrary text as config.pbtxt through the parser, validation, and the
// three renderings (text, Triton's binary form, JSON). Bad configs must come back as a Status.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = tessera::ParseModelConfig(std::string(reinterpret_cast<const char*>(data), size));
  if (!c.ok()) return 0;
  (void)tessera::ValidateModelConfig(*c);
  auto text = tessera::FormatModelConfig(*c);
  auto again = tessera::ParseModelConfig(text);  // what we print must parse
  if (!again.ok()) __builtin_trap();
  (void)tessera::ModelConfigProtoBytes(*c);
  (void)tessera::ModelConfigJson(*c);
  (void)c->SloMs();
  return 0;
}
