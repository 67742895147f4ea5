// Hand-written layers as forward/backward pairs on Eigen matrices, one column per sample.
// Not an autograd: each backward takes exactly what its forward saved. No allocation here:
// every output is a caller-owned buffer of the right shape.
#pragma once
#include <Eigen/Core>

namespace vaelab {

using MatRef = Eigen::Ref<Eigen::MatrixXf>;
using ConstMatRef = Eigen::Ref<const Eigen::MatrixXf>;
using VecRef = Eigen::Ref<Eigen::VectorXf>;
using ConstVecRef = Eigen::Ref<const Eigen::VectorXf>;

// Dense: y = W x + b.   W: (out, in)  b: (out)  x: (in, B)  y: (out, B)
inline void dense_forward(ConstMatRef W, ConstVecRef b, ConstMatRef x, MatRef y) {
  y.noalias() = W * x;
  y.colwise() += b;
}

// db = Σ_cols dy, adding whole columns in order: every element sees the same sequence of additions
// whatever the alignment of db (Eigen's rowwise().sum() picks packet or scalar paths by alignment,
// so two gradient buffers could differ in the last bit).  dy: (n, B)  db: (n)
template <class Dy, class Db>
inline void column_sum(const Dy& dy, Db&& db) {
  db = dy.col(0);
  for (Eigen::Index c = 1; c < dy.cols(); ++c) db += dy.col(c);
}

// Given dy (out, B): dW = dy xᵀ, db = Σ_cols dy, and dx = Wᵀ dy unless dx is null.
// Gradients are assigned, not accumulated: each shard owns its gradient buffer and computes
// every layer's gradient exactly once per step (L samples are extra columns), so no zeroing pass.
inline void dense_backward(ConstMatRef W, ConstMatRef x, ConstMatRef dy, MatRef dW, VecRef db, MatRef* dx) {
  dW.noalias() = dy * x.transpose();
  column_sum(dy, db);
  if (dx) dx->noalias() = W.transpose() * dy;
}

// ReLU in place: h = max(h, 0).
inline void relu_forward(MatRef h) { h = h.cwiseMax(0.0f); }

// Given the ReLU output h and dh, zero dh where the unit was inactive.
inline void relu_backward(ConstMatRef h, MatRef dh) {
  dh = (h.array() > 0.0f).select(dh, 0.0f);
}

// Softmax down each column, in place (max subtracted first, so large logits do not overflow).
inline void softmax_columns(MatRef a) {
  for (Eigen::Index c = 0; c < a.cols(); ++c) {
    auto col = a.col(c);
    col.array() = (col.array() - col.maxCoeff()).exp();
    col /= col.sum();
  }
}

}  // namespace vaelab
