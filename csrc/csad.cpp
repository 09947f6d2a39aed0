// Operator schemas of the csad library. Each op's implementation is written once, in csrc/<op>.cpp
// (cs_mutual_information.cpp holds cs_mutual_information_forward), over the per-device primitives of
// csrc/cpu/ and csrc/cuda/, and registered there for CPU and, in a build with CUDA, CUDA by
// CSAD_REGISTER_FORWARD_BACKWARD (csrc/shared.h).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// An importable, empty `csad_kernels._C`: importing it loads this shared library,
// which runs the TORCH_LIBRARY static initialisers below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "csad C++/CUDA kernels (registered under torch.ops.csad)", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(csad, m) {
  m.def("cosine_similarity(Tensor x, Tensor y) -> Tensor");
  m.def("cosine_similarity_backward(Tensor grad, Tensor x, Tensor y, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def("softmax_adjacency(Tensor s, Tensor tau) -> Tensor");
  // s may be None when output_mask does not ask for dtau (ds reads only e and tau).
  m.def(
      "softmax_adjacency_backward(Tensor grad, Tensor e, Tensor? s, Tensor tau, bool[2] output_mask) "
      "-> (Tensor, Tensor)");
  // rwr returns R and the row sums of W = (I - cE)^-1, which its backward uses to rebuild W.
  m.def("rwr(Tensor e, float c) -> (Tensor, Tensor)");
  m.def("rwr_backward(Tensor grad, Tensor r, Tensor w_row_sums, float c) -> Tensor");
  m.def("symmetric_cross_entropy(Tensor p, Tensor q) -> Tensor");
  m.def(
      "symmetric_cross_entropy_backward(Tensor grad, Tensor p, Tensor q, bool[2] output_mask) -> (Tensor, Tensor)");
  // cross_sample_mi (csrc/cross_sample_mi.cpp) returns the value and kStats (csrc/shared.h) numbers per
  // problem for its backward.
  // groups (..., N): only same-group pairs count; w_pos/w_neg: the scales of estimator="ms" (None
  // for cs/jsd; w_neg None means w_pos). The backward returns (dm, dw_pos, dw_neg).
  m.def(
      "cross_sample_mi(Tensor m, Tensor? labels, Tensor? mask, int tolerance, str estimator, str reduction, "
      "Tensor? groups=None, Tensor? w_pos=None, Tensor? w_neg=None) -> (Tensor, Tensor)");
  m.def(
      "cross_sample_mi_backward(Tensor grad, Tensor m, Tensor stats, Tensor? labels, Tensor? mask, int tolerance, "
      "str estimator, Tensor? groups=None, Tensor? w_pos=None, Tensor? w_neg=None) -> (Tensor, Tensor, Tensor)");
  // The fused estimator (csrc/cs_mutual_information.cpp). The forward returns the value and the state
  // its backward reads: the 12 fields of EstimatorState there (named in Python by
  // csad_kernels/extension/cs_mutual_information.py EstimatorState). estimator="ms" scores the unscaled
  // similarity with w₊ = alpha and w₋ = alpha_neg (None: alpha). The backward computes the gradients
  // (du, dv, dalpha, dtau_y, dtau_b, dalpha_neg) that output_mask asks for, returning None for the
  // others; the state fields it does not read may be None.
  m.def(
      "cs_mutual_information_forward(Tensor u, Tensor v, Tensor? labels, Tensor? mask, int tolerance, "
      "Tensor alpha, Tensor tau_y, Tensor tau_b, float c, str similarity, str estimator, str reduction, "
      "Tensor? groups=None, Tensor? alpha_neg=None) -> (Tensor, Tensor[])");
  m.def(
      "cs_mutual_information_backward(Tensor grad, Tensor?[] state, Tensor? labels, Tensor? mask, int tolerance, "
      "Tensor alpha, Tensor tau_y, Tensor tau_b, float c, str similarity, str estimator, Tensor? groups, "
      "Tensor? alpha_neg, bool[6] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
