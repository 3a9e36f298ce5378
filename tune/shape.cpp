// The representative problem a (spec, bucket) is tuned at.
//
// Dense (and the length of every sequence when the layout is dense):
//   L       = the bucket's upper bound: up_to_512 -> 512, up_to_2k -> 2048, up_to_8k -> 8192,
//             over_8k -> 16384 (TritonSigmoid's autotune points, so results compare 1:1)
//   batch   = 16384 / L tokens (TritonSigmoid's benchmark grid keeps batch * L = 16384)
//   heads   = 2048 / head_dim (a model width of 2048: hd 64 -> 32 heads, hd 128 -> 16), rounded
//             down to a multiple of the spec's gqa_ratio (at least gqa_ratio)
//
// Padded and varlen: a ragged batch with the same heads.
//   - the first sequence is the batch's longest and lies in the bucket: L for the synthetic
//     distribution; with user lengths, max(user lengths) clamped into the bucket's range
//     (lower bucket bound + 1 .. L), so that user batches that never reach L are timed at the
//     lengths they have;
//   - the other sequences are drawn until the token budget is filled, the last one cut to the
//     remainder, so the lengths always sum to the budget exactly;
//   - token budget: max(16384, 2 * L): the dense grid's 16384 tokens, or two longest sequences'
//     worth for over_8k so that the batch is ragged at all;
//   - synthetic draws: log-uniform between L/8 and L (round to nearest), i.e. half of the drawn
//     sequences are shorter than L/sqrt(8) ~ 0.35 L: a spread of short and long sequences
//     like real packed batches, with padding waste that a dense tile must skip;
//   - user draws: uniformly from the given lengths (with repetition), clamped to L;
//   - random numbers: splitmix64 with a fixed seed and the top 53 bits as the uniform, so every
//     machine and standard library builds the same batch.
#include "tune/tuner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sigjit::tuner {

namespace {

constexpr int kTokens = 16384;
constexpr int kModelWidth = 2048;
constexpr std::uint64_t kSeed = 0x5167'6a69'7475'6e65ULL;  // "Sigjitune"

int bucket_length(SeqBucket b) {
  switch (b) {
    case SeqBucket::up_to_512: return 512;
    case SeqBucket::up_to_2k: return 2048;
    case SeqBucket::up_to_8k: return 8192;
    case SeqBucket::over_8k: return 16384;
  }
  return 16384;
}

// Longest sequence of the bucket below this one (exclusive lower bound).
int bucket_floor(SeqBucket b) {
  switch (b) {
    case SeqBucket::up_to_512: return 0;
    case SeqBucket::up_to_2k: return 512;
    case SeqBucket::up_to_8k: return 2048;
    case SeqBucket::over_8k: return 8192;
  }
  return 0;
}

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  std::uint64_t state_;
};

}  // namespace

std::string Shape::describe() const {
  const bool uniform = !seq_lens.empty() && std::all_of(seq_lens.begin(), seq_lens.end(), [&](int l) { return l == seq_lens.front(); });
  if (uniform) return fmt::format("B={} H={} L={}", batch, heads, seq_lens.front());
  long long tokens = 0;
  int longest = 0;
  for (int l : seq_lens) tokens += l, longest = std::max(longest, l);
  constexpr std::size_t kShown = 8;
  std::vector<int> shown(seq_lens.begin(), seq_lens.begin() + static_cast<std::ptrdiff_t>(std::min(kShown, seq_lens.size())));
  return fmt::format("B={} H={} ragged max={} tokens={} lens={}{}", batch, heads, longest, tokens, fmt::join(shown, ","),
                     seq_lens.size() > kShown ? ",..." : "");
}

Shape representative_shape(const KernelSpec& spec, const std::vector<int>* user_lengths) {
  const int L = bucket_length(spec.bucket);
  if (spec.head_dim <= 0) throw Error(fmt::format("head_dim={} must be positive", spec.head_dim));
  const int gqa = std::max(1, spec.gqa_ratio);
  Shape s;
  s.heads = std::max(gqa, kModelWidth / spec.head_dim / gqa * gqa);

  if (spec.layout == Layout::dense) {
    s.batch = std::max(1, kTokens / L);
    s.seq_lens.assign(static_cast<std::size_t>(s.batch), L);
    return s;
  }

  const bool user = user_lengths != nullptr && !user_lengths->empty();
  if (user) {
    for (std::size_t i = 0; i < user_lengths->size(); ++i) {
      if ((*user_lengths)[i] <= 0)
        throw Error(fmt::format("user lengths: entry {} is {}; lengths must be positive", i, (*user_lengths)[i]));
    }
  }
  const int budget = std::max(kTokens, 2 * L);
  const int longest =
      user ? std::clamp(*std::max_element(user_lengths->begin(), user_lengths->end()), bucket_floor(spec.bucket) + 1, L) : L;
  SplitMix64 rng(kSeed ^ static_cast<std::uint64_t>(L));
  const double lo = std::log(L / 8.0), hi = std::log(static_cast<double>(L));
  s.seq_lens.push_back(longest);
  int remaining = budget - longest;
  while (remaining > 0) {
    int len;
    if (user) {
      len = std::min((*user_lengths)[rng.next() % user_lengths->size()], L);
    } else {
      len = static_cast<int>(std::lround(std::exp(lo + rng.uniform() * (hi - lo))));
      len = std::clamp(len, 1, L);
    }
    len = std::min(len, remaining);
    s.seq_lens.push_back(len);
    remaining -= len;
  }
  s.batch = static_cast<int>(s.seq_lens.size());
  return s;
}

}  // namespace sigjit::tuner
