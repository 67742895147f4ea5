// The text colours the app gives severities (messages, the trainer's log, marker notes, form
// errors), so that a warning looks the same in every panel.
// Not the data colours (labels, colormaps: core/view_math) and not the ImGui style.
#pragma once
#include <imgui.h>

namespace vaelab::app {

inline const ImVec4 kWarningColour(1.0f, 0.8f, 0.35f, 1.0f);
inline const ImVec4 kErrorColour(1.0f, 0.45f, 0.45f, 1.0f);
inline const ImVec4 kInfoMessageColour(0.75f, 0.9f, 1.0f, 1.0f);

}  // namespace vaelab::app
