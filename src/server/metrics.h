// Prometheus text exposition of every loaded model's statistics: Triton's nv_inference_*
// names (so existing dashboards work) and Tessera's own tessera_* series.
#pragma once

#include <string>

#include "tessera/runtime/model_manager.h"

namespace tessera::server {

std::string PrometheusText(const ModelManager& manager);

}  // namespace tessera::server
