// 2-D convolution and transposed convolution layers (PyTorch Conv2d / ConvTranspose2d semantics and
// weight layouts) as forward/backward pairs on column-per-sample matrices, by im2col/col2im + GEMM.
// Not a model: the convolutional VAE's wiring lives with the model; here only layers and their sizes.
#pragma once
#include <cstddef>
#include <vector>

#include <Eigen/Core>

#include "core/layers.hpp"

namespace vaelab {

// ---- Geometry -------------------------------------------------------------------------------------
// Activations of one sample are a column of C·H·W floats in (C, H, W) row-major order, i.e. PyTorch's
// NCHW flattening; a batch is B such columns: x is (in_size, B), y is (out_size, B).
//
// transposed = false (nn.Conv2d):
//   weight [out_c, in_c, k, k] row-major, bias [out_c]
//   out_h = ⌊(in_h + 2·pad − k) / stride⌋ + 1                        (output_pad must be 0)
// transposed = true (nn.ConvTranspose2d):
//   weight [in_c, out_c, k, k] row-major, bias [out_c]
//   out_h = (in_h − 1)·stride − 2·pad + k + output_pad_h,  0 ≤ output_pad_h < stride
// and the same for w. Kernel, stride and pad are the same on both axes; output padding is per axis
// (PyTorch's output_padding=(h, w)) because an H×W image with H and W of different parity needs
// different output padding on each axis to come back to its size.
struct ConvGeometry {
  int in_c = 1, in_h = 1, in_w = 1;
  int out_c = 1;
  int kernel = 3, stride = 1, pad = 0;
  int output_pad_h = 0, output_pad_w = 0;  // transposed only
  bool transposed = false;

  int out_h() const;
  int out_w() const;
  int in_size() const { return in_c * in_h * in_w; }      // rows of x
  int out_size() const { return out_c * out_h() * out_w(); }  // rows of y
  int weight_size() const { return in_c * out_c * kernel * kernel; }
  int bias_size() const { return out_c; }
  bool operator==(const ConvGeometry&) const = default;
};

// Throws vaelab::Error naming the bad field (non-positive sizes, output padding ≥ stride, an empty
// output, sizes whose products overflow int). conv_forward/backward assume a valid geometry.
void validate(const ConvGeometry& g);

// ---- The convolutional VAE's shapes ----------------------------------------------------------------
// Images have C channels (1 grey, 3 RGB): the first convolution takes C, the last gives C.
// Encoder: Conv 3×3 32 s2 p1 → ReLU → Conv 3×3 64 s2 p1 → ReLU → Dense (64·h2·w2 → 2·latent: μ, log σ²).
// Decoder: Dense (latent → 32·h2·w2) → ReLU → ConvT 3×3 64 s2 p1 → ReLU → ConvT 3×3 32 s2 p1 → ReLU
//          → ConvT 3×3 C s1 p1 (logits or means, C×H×W).
// Stride-2 layers with pad 1 give ⌈H/2⌉ ('same' in Keras's sense), so H → h1 = ⌈H/2⌉ → h2 = ⌈h1/2⌉
// (28 → 14 → 7, 27 → 14 → 7, 32 → 16 → 8, 20 → 10 → 5). A stride-2 transposed 3×3 with pad 1 gives
// 2h − 1 + output_pad, so output_pad = 1 when the encoder-side size was even and 0 when odd: every
// H, W ≥ 1 comes back exactly (7 → 14 → 28 → 28, 7 → 14 → 27 → 27), each axis on its own.
struct ConvVaeGeometry {
  ConvGeometry enc1, enc2;   // encoder convolutions
  int enc_dense_in = 0;      // 64·h2·w2 (enc2's output, flattened NCHW)
  int enc_dense_out = 0;     // 2·latent: μ rows then log σ² rows
  int dec_dense_in = 0;      // latent
  int dec_dense_out = 0;     // 32·h2·w2 (dec1's input)
  ConvGeometry dec1, dec2, dec3;  // decoder transposed convolutions; dec3 outputs C×H×W
};

// Supported: C ∈ {1, 3}, 1 ≤ H, W ≤ 4096 and latent ≥ 1 (any parity, square or not). Throws
// vaelab::Error otherwise.
ConvVaeGeometry conv_vae_geometries(int C, int H, int W, int latent);

// ---- Workspace --------------------------------------------------------------------------------------
// Scratch for one layer call at a time: one sample's im2col matrix (out_h·out_w · in_c·k·k floats for
// a conv, in_h·in_w · out_c·k·k for a transposed conv) and, for stride > 1, one large-side image.
// Samples are processed one after another, so the size does not depend on the batch (and a sample's
// output does not depend on the rest of the batch). reserve() every geometry a workspace will serve
// and calls never allocate (an unreserved geometry grows it on first use). One workspace may serve
// several layers, but not two threads at once.
struct ConvWorkspace {
  ConvWorkspace() = default;
  explicit ConvWorkspace(const ConvGeometry& g) { reserve(g); }
  void reserve(const ConvGeometry& g);  // grows only
  std::size_t floats() const { return cols.size() + planes.size() + w_pack.size() + b_pack.size(); }

  std::vector<float, Eigen::aligned_allocator<float>> cols;    // (P, K) im2col of one sample
  std::vector<float, Eigen::aligned_allocator<float>> planes;  // stride > 1: one large-side image by phase
  // The GEMMs' packed right-hand sides (core/gemm): Wm or Wmᵀ, packed once per call and shared by
  // every sample, and one sample's (P, sm_c) side for dWm.
  std::vector<float> w_pack;
  std::vector<float> b_pack;
};

// ---- Layers -----------------------------------------------------------------------------------------
// y = conv(x; W) + b, or the transposed convolution when g.transposed.
// W: weight_size() floats in the PyTorch layout above; b: out_c floats or nullptr (no bias).
// x: (in_size, B)  y: (out_size, B), y overwritten.
void conv_forward(const float* W, const float* b, const ConvGeometry& g, ConstMatRef x, MatRef y, ConvWorkspace& ws);

// Given dy (out_size, B): dW (weight_size floats, PyTorch layout) and db (out_c floats, may be nullptr)
// are ASSIGNED (as dense_backward does), and dx (in_size, B) is assigned unless dx is null.
// x is the forward's input (the layer is linear, so the output need not be kept).
void conv_backward(const float* W, const ConvGeometry& g, ConstMatRef x, ConstMatRef dy, float* dW, float* db,
                   MatRef* dx, ConvWorkspace& ws);

}  // namespace vaelab
