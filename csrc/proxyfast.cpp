// Operator schemas of the proxyfast library and the Python module stub.
//
// Kernels register per device with TORCH_LIBRARY_IMPL in cpu/ and cuda/; fake
// (meta) kernels are registered in Python (proxyfast/ops.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing proxyfast._C loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(proxyfast, m) {
  // Softmax entropy in nats and its log10, fp32, one value per row of [N, C] logits.
  m.def("entropy(Tensor logits) -> (Tensor, Tensor)");
  // The entropy op fused with binning of log10 entropy into known edges:
  // (entropy, log10 entropy, int32 bin ids, int64 counts).
  m.def("entropy_histogram(Tensor logits, float lo, float bin_width, int n_bins, float top) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // Bins a 1-D fp32 tensor into edges lo + b * bin_width (b = 0..n_bins, last edge `top`):
  // (int32 bin ids, -1 outside [lo, top]; int64 counts).
  m.def("histogram_bins(Tensor values, float lo, float bin_width, int n_bins, float top) -> (Tensor, Tensor)");
  // k distinct indices drawn without replacement, each draw proportional to the weights
  // not yet drawn, in draw order; `stream` selects an independent random stream.
  m.def("weighted_sample(Tensor weights, int k, int seed, int stream) -> Tensor");
}
