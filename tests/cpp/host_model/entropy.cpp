// csrc/cuda/entropy.cu compiled for the host model (csrc/cuda/host_model.h): its kernels and
// glue, registered as torch.ops.proxyfast_host_model.*. Built by tests/_host_model.py.
#include "cuda/entropy.cu"
