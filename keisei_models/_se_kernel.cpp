// The CPU kernel of keisei::squeeze_excite: one operator for pool, the two small linear layers,
// ReLU, sigmoid and the channel scale (and, for the scale+shift block, the shift).
//
// Each sample is handled whole by one thread: its [C, H*W] plane is pooled and then scaled while
// it is still in that core's cache, where the composite block sweeps the whole batch once per op.
// Narrow headers, not ATen/ATen.h: every user builds this once per CPU kind and torch version,
// and the whole of ATen's declarations makes that first build about twice as long.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

template <typename scalar_t>
void squeeze_excite_sample(const scalar_t* x, scalar_t* y, int64_t channels, int64_t plane,
                           const float* w1, const float* b1, int64_t hidden, const float* w2,
                           const float* b2, bool scale_shift, std::vector<float>& pooled,
                           std::vector<float>& act, std::vector<float>& gate) {
  const float inv_plane = 1.0f / static_cast<float>(plane);
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* row = x + c * plane;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < plane; ++i) sum += static_cast<float>(row[i]);
    pooled[c] = sum * inv_plane;
  }
  for (int64_t j = 0; j < hidden; ++j) {
    const float* w = w1 + j * channels;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < channels; ++c) acc += w[c] * pooled[c];
    acc += b1[j];
    act[j] = acc > 0.0f ? acc : 0.0f;
  }
  const int64_t outputs = scale_shift ? 2 * channels : channels;
  for (int64_t k = 0; k < outputs; ++k) {
    const float* w = w2 + k * hidden;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < hidden; ++j) acc += w[j] * act[j];
    gate[k] = acc + b2[k];
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float g = 1.0f / (1.0f + std::exp(-gate[c]));
    const float shift = scale_shift ? gate[channels + c] : 0.0f;
    const scalar_t* row = x + c * plane;
    scalar_t* out = y + c * plane;
#pragma omp simd
    for (int64_t i = 0; i < plane; ++i) out[i] = static_cast<scalar_t>(static_cast<float>(row[i]) * g + shift);
  }
}

// float64 keeps double accumulators so that gradcheck sees the exact function.
void squeeze_excite_sample(const double* x, double* y, int64_t channels, int64_t plane,
                           const double* w1, const double* b1, int64_t hidden, const double* w2,
                           const double* b2, bool scale_shift, std::vector<double>& pooled,
                           std::vector<double>& act, std::vector<double>& gate) {
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (int64_t i = 0; i < plane; ++i) sum += x[c * plane + i];
    pooled[c] = sum / static_cast<double>(plane);
  }
  for (int64_t j = 0; j < hidden; ++j) {
    double acc = b1[j];
    for (int64_t c = 0; c < channels; ++c) acc += w1[j * channels + c] * pooled[c];
    act[j] = acc > 0.0 ? acc : 0.0;
  }
  const int64_t outputs = scale_shift ? 2 * channels : channels;
  for (int64_t k = 0; k < outputs; ++k) {
    double acc = b2[k];
    for (int64_t j = 0; j < hidden; ++j) acc += w2[k * hidden + j] * act[j];
    gate[k] = acc;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const double g = 1.0 / (1.0 + std::exp(-gate[c]));
    const double shift = scale_shift ? gate[channels + c] : 0.0;
    for (int64_t i = 0; i < plane; ++i) y[c * plane + i] = x[c * plane + i] * g + shift;
  }
}

}  // namespace

at::Tensor squeeze_excite_cpu(const at::Tensor& x_in, const at::Tensor& w1_in, const at::Tensor& b1_in,
                              const at::Tensor& w2_in, const at::Tensor& b2_in, bool scale_shift) {
  TORCH_CHECK(x_in.dim() == 4, "squeeze_excite: x must be [B, C, H, W], got ", x_in.sizes());
  const at::Tensor x = x_in.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const int64_t hidden = w1_in.size(0);
  at::Tensor y = at::empty_like(x);
  if (x.scalar_type() == at::kDouble) {
    const at::Tensor w1 = w1_in.to(at::kDouble).contiguous(), b1 = b1_in.to(at::kDouble).contiguous();
    const at::Tensor w2 = w2_in.to(at::kDouble).contiguous(), b2 = b2_in.to(at::kDouble).contiguous();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> pooled(channels), act(hidden), gate(2 * channels);
      for (int64_t n = begin; n < end; ++n) {
        squeeze_excite_sample(x.data_ptr<double>() + n * channels * plane, y.data_ptr<double>() + n * channels * plane,
                              channels, plane, w1.data_ptr<double>(), b1.data_ptr<double>(), hidden,
                              w2.data_ptr<double>(), b2.data_ptr<double>(), scale_shift, pooled, act, gate);
      }
    });
    return y;
  }
  const at::Tensor w1 = w1_in.to(at::kFloat).contiguous(), b1 = b1_in.to(at::kFloat).contiguous();
  const at::Tensor w2 = w2_in.to(at::kFloat).contiguous(), b2 = b2_in.to(at::kFloat).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "squeeze_excite_cpu", [&] {
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> pooled(channels), act(hidden), gate(2 * channels);
      for (int64_t n = begin; n < end; ++n) {
        squeeze_excite_sample<scalar_t>(
            x.data_ptr<scalar_t>() + n * channels * plane, y.data_ptr<scalar_t>() + n * channels * plane, channels,
            plane, w1.data_ptr<float>(), b1.data_ptr<float>(), hidden, w2.data_ptr<float>(), b2.data_ptr<float>(),
            scale_shift, pooled, act, gate);
      }
    });
  });
  return y;
}

// A private namespace of its own: the public operator, keisei::squeeze_excite, is defined in
// Python (torch.library.custom_op) and calls this kernel for CPU tensors.
TORCH_LIBRARY(keisei_se_cpu, m) {
  m.def("forward(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, bool scale_shift) -> Tensor",
        &squeeze_excite_cpu);
}
