// Operator schemas of the csad library. Backends register implementations with
// TORCH_LIBRARY_IMPL(csad, <DispatchKey>, m) in csrc/cpu/ and csrc/cuda/.
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
  m.def("cosine_similarity_backward(Tensor grad, Tensor x, Tensor y) -> (Tensor, Tensor)");
}
