// Human-readable rendering of EngineStats for `kvfs stats`. Pure; thread-safe.
#pragma once

#include <string>

#include "core/engine.h"

namespace kvfs {

std::string FormatStatsText(const EngineStats& stats);

}  // namespace kvfs
