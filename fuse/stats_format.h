// Renderings of EngineStats: the JSON that `kvfs stats --json` and the
// user.kvfs.stats attribute give, and the text of `kvfs stats`. Pure
// functions; thread-safe; no FUSE header.
#pragma once

#include <string>

#include "core/engine.h"

namespace kvfs {

// One JSON object: the engine's totals, then "stores": one object per store.
std::string FormatStatsJson(const EngineStats& stats);
std::string FormatStatsText(const EngineStats& stats);

}  // namespace kvfs
