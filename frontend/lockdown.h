// The frontend's confinement, as one function that reads top to bottom in the order it
// happens. Called once from main(), after the inherited fds are checked, the metrics listener
// is bound and the gRPC server is built, before the first connection is accepted.
#pragma once

#include <string>

#include "shared/landlock.h"

namespace vkms::frontend {

// Nothing: no file, no TCP connect or bind, no signals or abstract sockets outside itself.
landlock::Rules FrontendLandlockRules();

// dedicated_uid: the broker started us as our own user (it was root), so a per-user thread
// limit cannot starve anyone else.
bool LockDownFrontend(bool dedicated_uid, std::string* error);

}  // namespace vkms::frontend
