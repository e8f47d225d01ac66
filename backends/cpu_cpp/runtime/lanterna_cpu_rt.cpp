// The runtime library of generated CPU modules: the parts of lanterna_cpu.h that
// every module uses alike (the per-thread arena, the deferred-product logs, the
// guarded entry), compiled once per machine and flag set by the driver
// (`runtime_library`) instead of once per module. Modules link it.
#define LANTERNA_RUNTIME_LIBRARY
#include "lanterna_cpu.h"
