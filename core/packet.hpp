// The widest float packet of Eigen's that this build targets (AVX-512: 16 lanes, AVX: 8, SSE: 4,
// none: a plain float), for the few hand-vectorised loops of core/ (Adam, the Bernoulli loss
// rows). Not a SIMD library: just the one alias and its width, so those loops stay portable.
#pragma once
#include <Eigen/Core>

namespace vaelab::packet {

namespace ei = Eigen::internal;
using Packet = ei::packet_traits<float>::type;
inline constexpr int kLanes = static_cast<int>(sizeof(Packet) / sizeof(float));

}  // namespace vaelab::packet
