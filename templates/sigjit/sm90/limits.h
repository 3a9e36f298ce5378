// What bounds every Hopper kernel's tile config, host and device. Constants are enumerators:
// a namespace-scope constexpr variable would be emitted into every kernel's PTX.
#pragma once

namespace sigjit {
namespace kern {
namespace sm90 {

enum : int { kSmemLimit = 227 * 1024 };  // opt-in dynamic shared memory per block on sm_90

}  // namespace sm90
}  // namespace kern
}  // namespace sigjit
