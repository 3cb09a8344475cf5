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
  // Bins a 1-D fp32 or fp64 tensor (compared in fp64) into edges lo + b * bin_width (b = 0..n_bins, last edge `top`):
  // (int32 bin ids, -1 outside [lo, top]; int64 counts).
  m.def("histogram_bins(Tensor values, float lo, float bin_width, int n_bins, float top) -> (Tensor, Tensor)");
  // k distinct indices drawn without replacement, each draw proportional to the weights
  // not yet drawn, in draw order; `stream` selects an independent random stream.
  m.def("weighted_sample(Tensor weights, int k, int seed, int stream) -> Tensor");
  // weighted_sample(bin_weights[bin_ids], k, seed, stream), the same indices, without the
  // N-sized weights: items share the weight of their bin (int32 bin_ids, float64 bin_weights).
  m.def("weighted_sample_by_bin(Tensor bin_ids, Tensor bin_weights, int k, int seed, int stream) -> Tensor");
  // One edge of the DARTS supernet, fused (csrc/common/mixed_edge.h): the sum over its
  // terms, t = 0 max pool 3x3 of x, t = 1 avg pool 3x3 of x, t = 2 + b branches[b], each
  // weighted by weights[slot] and normalised by a non-affine batch norm as norm_modes[t]
  // says (0 none, 1 batch statistics, 2 the rows 2t, 2t + 1 of running_stats: mean and
  // variance), with eps[t]; plus weights[skip] * x. free_slots = [skip, max pool, avg
  // pool] (-1: absent), branch_slots the branches' weight slots. Returns (output, the
  // [2 * terms, C] float64 statistics it normalised with, biased variances).
  m.def("mixed_edge(Tensor x, Tensor weights, Tensor[] branches, int[] branch_slots, int[] free_slots, int stride, "
        "int[] norm_modes, float[] eps, Tensor? running_stats) -> (Tensor, Tensor)");
  // Its backward: (grad x, grad weights, grad branches); output_mask = [x, branches],
  // an unrequested gradient comes back empty.
  m.def("mixed_edge_backward(Tensor grad, Tensor x, Tensor weights, Tensor[] branches, int[] branch_slots, "
        "int[] free_slots, int stride, int[] norm_modes, float[] eps, Tensor stats, bool[2] output_mask) "
        "-> (Tensor, Tensor, Tensor[])");
  // PyTorch's running-statistics update of a batch norm from the batch mean and biased
  // variance (float64) over `count` values, in place.
  m.def("batch_norm_running_update(Tensor(a!) running_mean, Tensor(b!) running_var, Tensor mean, Tensor var, "
        "float momentum, int count) -> ()");
}
