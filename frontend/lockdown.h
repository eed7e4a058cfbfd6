// The frontend's confinement, as one function that reads top to bottom in the order it
// happens. Called once from main(), after the inherited fds are checked and the metrics
// listener is bound, before the first connection is accepted.
#pragma once

#include <string>

namespace vkms::frontend {

bool LockDownFrontend(std::string* error);

}  // namespace vkms::frontend
