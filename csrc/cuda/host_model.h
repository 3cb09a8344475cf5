// A host model of the CUDA execution model, so that the CUDA sources compile as host C++
// (with PF_HOST_MODEL defined) and their kernels and glue run on a machine without a GPU.
// docs/cuda.md says what it covers and what it does not.
//
// A launch runs its blocks one after another. The threads of a block are fibers on one
// OS thread, run in order until each finishes or waits at a barrier: __syncthreads waits
// for every live thread of the block, a warp shuffle for every live lane of its warp
// (warps of 32 lanes, as on the GPU). So the block-level arithmetic, shared memory,
// reductions and shuffles are those of the device, in one fixed interleaving; no data
// race can show up. Threads waiting at different barriers (a divergent __syncthreads or
// shuffle) are reported as a deadlock, a shuffle naming an exited lane as an error. A
// launch whose configuration the device would refuse (an empty grid, more than 1024
// threads, gridDim.y above 65535, too much shared memory) does not run and sets the
// error that C10_CUDA_KERNEL_LAUNCH_CHECK() reports, as on the device.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One block runs at a time, so a function-local static is the block's shared memory.
#define __shared__ static

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = struct CUstream_st*;

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    default:
      return "invalid argument";
  }
}

using std::isfinite;

namespace proxyfast {
namespace host_model {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // without opting in to more
constexpr size_t kStackBytes = 256 * 1024;

struct Barrier {
  uint64_t generation = 0;
  int arrived = 0;
  int expected = 0;
};

struct Thread {
  void* stack_pointer = nullptr;  // saved while suspended
#if !defined(__x86_64__)
  ucontext_t context;
#endif
  uint3 index{0, 0, 0};
  bool done = false;
  const uint64_t* wait_on = nullptr;
  uint64_t wait_generation = 0;
};

struct Warp {
  Barrier barrier;
  uint64_t exchange[kWarpSize];
  int size = 0;
};

struct Block {
  dim3 grid, block;
  uint3 index{0, 0, 0};
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  Barrier barrier;
  void* scheduler_stack_pointer = nullptr;
#if !defined(__x86_64__)
  ucontext_t scheduler;
#endif
  int current = 0;
  unsigned char* dynamic_shared = nullptr;
  const std::function<void()>* body = nullptr;
  std::string error;
};

inline Block*& active_block() {
  static thread_local Block* block = nullptr;
  return block;
}

inline Thread& active_thread() { return active_block()->threads[static_cast<size_t>(active_block()->current)]; }

#if defined(__x86_64__)
// switch_stack(save, load): saves the callee-saved registers on the current stack, its
// stack pointer in *save, and resumes the context whose stack pointer is `load`. A weak
// symbol: every translation unit that includes this header emits the same definition.
extern "C" void proxyfast_host_model_switch(void** save, void* load);
asm(R"(
  .text
  .weak proxyfast_host_model_switch
  .type proxyfast_host_model_switch, @function
proxyfast_host_model_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size proxyfast_host_model_switch, .-proxyfast_host_model_switch
)");
#endif

inline void to_scheduler() {
  Block& b = *active_block();
  Thread& t = active_thread();
#if defined(__x86_64__)
  proxyfast_host_model_switch(&t.stack_pointer, b.scheduler_stack_pointer);
#else
  swapcontext(&t.context, &b.scheduler);
#endif
}

// Releases a barrier whose live threads have all arrived.
inline void settle(Barrier& barrier) {
  if (barrier.arrived > 0 && barrier.arrived >= barrier.expected) {
    barrier.arrived = 0;
    ++barrier.generation;
  }
}

inline void arrive(Barrier& barrier) {
  ++barrier.arrived;
  const uint64_t generation = barrier.generation;
  settle(barrier);
  if (barrier.generation != generation) return;
  Thread& t = active_thread();
  t.wait_on = &barrier.generation;
  t.wait_generation = generation;
  to_scheduler();
}

inline int linear_thread(const Block& b, const uint3& i) {
  return static_cast<int>(i.x + b.block.x * (i.y + b.block.y * i.z));
}

[[noreturn]] inline void thread_main() {
  Block& b = *active_block();
  Thread& t = active_thread();
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = e.what();
  }
  t.done = true;
  const int lane_id = linear_thread(b, t.index);
  Warp& warp = b.warps[static_cast<size_t>(lane_id / kWarpSize)];
  --warp.size;
  --warp.barrier.expected;
  settle(warp.barrier);
  --b.barrier.expected;
  settle(b.barrier);
  to_scheduler();
  std::abort();  // a finished thread is never resumed
}

inline std::vector<std::unique_ptr<char[]>>& stacks() {
  static thread_local std::vector<std::unique_ptr<char[]>> pool;
  return pool;
}

inline void start_thread(Block& b, Thread& t, char* stack) {
#if defined(__x86_64__)
  // The stack as proxyfast_host_model_switch leaves it: six saved registers, then the
  // address it returns to, 16-byte aligned like a call's return address slot.
  auto top = reinterpret_cast<uintptr_t>(stack + kStackBytes) & ~uintptr_t{15};
  auto* slots = reinterpret_cast<void**>(top) - 8;
  slots[6] = reinterpret_cast<void*>(&thread_main);
  for (int r = 0; r < 6; ++r) slots[r] = nullptr;
  t.stack_pointer = slots;
#else
  getcontext(&t.context);
  t.context.uc_stack.ss_sp = stack;
  t.context.uc_stack.ss_size = kStackBytes;
  t.context.uc_link = &b.scheduler;
  makecontext(&t.context, reinterpret_cast<void (*)()>(&thread_main), 0);
#endif
  (void)b;
}

inline void resume(Block& b, Thread& t) {
#if defined(__x86_64__)
  proxyfast_host_model_switch(&b.scheduler_stack_pointer, t.stack_pointer);
#else
  swapcontext(&b.scheduler, &t.context);
#endif
}

// Runs one block: every thread until it finishes, in order, each resumed once the
// barrier it waits at is released.
inline void run_block(Block& b) {
  const int n = static_cast<int>(b.block.x * b.block.y * b.block.z);
  auto& pool = stacks();
  while (static_cast<int>(pool.size()) < n) pool.emplace_back(new char[kStackBytes]);
  b.threads.assign(static_cast<size_t>(n), Thread{});
  b.warps.assign(static_cast<size_t>((n + kWarpSize - 1) / kWarpSize), Warp{});
  for (size_t w = 0; w < b.warps.size(); ++w) {
    b.warps[w].size = std::min(kWarpSize, n - static_cast<int>(w) * kWarpSize);
    b.warps[w].barrier.expected = b.warps[w].size;
  }
  b.barrier = Barrier{0, 0, n};
  int i = 0;
  for (unsigned z = 0; z < b.block.z; ++z) {
    for (unsigned y = 0; y < b.block.y; ++y) {
      for (unsigned x = 0; x < b.block.x; ++x, ++i) {
        b.threads[static_cast<size_t>(i)].index = uint3{x, y, z};
        start_thread(b, b.threads[static_cast<size_t>(i)], pool[static_cast<size_t>(i)].get());
      }
    }
  }
  int remaining = n;
  while (remaining > 0) {
    bool progressed = false;
    for (int t = 0; t < n; ++t) {
      Thread& thread = b.threads[static_cast<size_t>(t)];
      if (thread.done || (thread.wait_on != nullptr && *thread.wait_on == thread.wait_generation)) continue;
      thread.wait_on = nullptr;
      b.current = t;
      resume(b, thread);
      progressed = true;
      if (thread.done) --remaining;
    }
    if (!progressed) {
      if (b.error.empty()) {
        b.error = "deadlock: threads wait at different barriers (a __syncthreads or shuffle not reached by all)";
      }
      return;
    }
  }
}

// The error of the last launch, as cudaGetLastError() returns it (and clears it).
inline cudaError_t& last_error() {
  static thread_local cudaError_t error = cudaSuccess;
  return error;
}

inline bool valid_config(dim3 grid, dim3 block, size_t shared_bytes) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 0x7FFFFFFFu && grid.y <= 65535 &&
         grid.z <= 65535 && threads >= 1 && threads <= kMaxThreads && block.z <= 64 && shared_bytes <= kMaxSharedBytes;
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t, Args&&... args) {
  if (!valid_config(grid, block, shared_bytes)) {
    last_error() = cudaErrorInvalidConfiguration;
    return;
  }
  // Each thread gets its own copy of the arguments, converted to the parameter types.
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  const std::function<void()> body = [&] {
    std::apply([&](auto... copies) { kernel(copies...); }, params);
  };
  // Uninitialised on the device: a recognisable pattern here.
  std::vector<unsigned char> dynamic(std::max<size_t>(shared_bytes, 1), 0xA5);
  Block b;
  b.grid = grid;
  b.block = block;
  b.body = &body;
  b.dynamic_shared = dynamic.data();
  Block* outer = active_block();
  active_block() = &b;
  for (unsigned z = 0; z < grid.z && b.error.empty(); ++z) {
    for (unsigned y = 0; y < grid.y && b.error.empty(); ++y) {
      for (unsigned x = 0; x < grid.x && b.error.empty(); ++x) {
        b.index = uint3{x, y, z};
        run_block(b);
      }
    }
  }
  active_block() = outer;
  if (!b.error.empty()) throw std::runtime_error("host model: " + b.error);
}

inline void check_launch() {
  const cudaError_t error = last_error();
  last_error() = cudaSuccess;
  TORCH_CHECK(error == cudaSuccess, "CUDA error: ", cudaGetErrorString(error));
}

inline void check_status(cudaError_t error, const char* what) {
  TORCH_CHECK(error == cudaSuccess, "CUDA error: ", cudaGetErrorString(error), " (", what, ")");
}

inline const uint3& thread_index() { return active_thread().index; }
inline const uint3& block_index() { return active_block()->index; }
inline uint3 block_dim() {
  const dim3& d = active_block()->block;
  return uint3{d.x, d.y, d.z};
}
inline uint3 grid_dim() {
  const dim3& d = active_block()->grid;
  return uint3{d.x, d.y, d.z};
}

// Exchanges v within the warp: every lane of `mask` must be live and take part.
template <typename V>
V shuffle_xor(unsigned mask, V v, int lane_mask) {
  static_assert(sizeof(V) <= sizeof(uint64_t) && std::is_trivially_copyable_v<V>);
  Block& b = *active_block();
  const int id = linear_thread(b, active_thread().index);
  Warp& warp = b.warps[static_cast<size_t>(id / kWarpSize)];
  const int lane = id % kWarpSize;
  const int first = id - lane;
  for (int l = 0; l < kWarpSize; ++l) {
    if ((mask >> l & 1u) == 0) continue;
    const int other = first + l;
    if (other >= static_cast<int>(b.threads.size()) || b.threads[static_cast<size_t>(other)].done) {
      throw std::logic_error("a warp shuffle names lane " + std::to_string(l) + ", which does not run");
    }
  }
  std::memcpy(&warp.exchange[lane], &v, sizeof(V));
  arrive(warp.barrier);
  V out;
  std::memcpy(&out, &warp.exchange[lane ^ lane_mask], sizeof(V));
  arrive(warp.barrier);  // nobody overwrites a slot before every lane has read
  return out;
}

}  // namespace host_model
}  // namespace proxyfast

#define threadIdx (::proxyfast::host_model::thread_index())
#define blockIdx (::proxyfast::host_model::block_index())
#define blockDim (::proxyfast::host_model::block_dim())
#define gridDim (::proxyfast::host_model::grid_dim())

inline void __syncthreads() { ::proxyfast::host_model::arrive(::proxyfast::host_model::active_block()->barrier); }

template <typename V>
V __shfl_xor_sync(unsigned mask, V v, int lane_mask) {
  return ::proxyfast::host_model::shuffle_xor(mask, v, lane_mask);
}

// Threads switch only at barriers, so a read-modify-write is atomic here.
template <typename V>
V atomicAdd(V* address, V value) {
  const V old = *address;
  *address = static_cast<V>(old + value);
  return old;
}

template <typename V>
V __ldg(const V* address) {
  return *address;
}

inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = ::proxyfast::host_model::last_error();
  ::proxyfast::host_model::last_error() = cudaSuccess;
  return error;
}

namespace c10 {
namespace cuda {

struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};

struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
};

inline CUDAStream getCurrentCUDAStream() { return {}; }

}  // namespace cuda
}  // namespace c10

#define C10_CUDA_KERNEL_LAUNCH_CHECK() ::proxyfast::host_model::check_launch()
#define C10_CUDA_CHECK(expr) ::proxyfast::host_model::check_status((expr), #expr)

// cub's device-wide algorithms, by their documented contracts: a stable selection, and a
// stable radix sort by key that leaves its result in either half of the double buffers.
namespace cub {

template <typename T>
struct DoubleBuffer {
  T* buffers[2];
  int selector;
  DoubleBuffer(T* current, T* alternate) : buffers{current, alternate}, selector(0) {}
  T* Current() const { return buffers[selector]; }
  T* Alternate() const { return buffers[selector ^ 1]; }
};

struct DeviceSelect {
  template <typename In, typename Out, typename Count, typename Predicate>
  static cudaError_t If(void* temp, size_t& temp_bytes, In in, Out out, Count* num_selected, int64_t n,
                        Predicate predicate, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    Count selected = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (predicate(in[i])) out[selected++] = in[i];
    }
    *num_selected = selected;
    return cudaSuccess;
  }
};

struct DeviceRadixSort {
  // Keys order as cub's radix sort orders them: floating-point keys by value.
  static uint64_t ordered_bits(double key) {
    uint64_t bits;
    std::memcpy(&bits, &key, sizeof(bits));
    return (bits >> 63) ? ~bits : bits | (uint64_t{1} << 63);
  }

  template <typename Key, typename Value>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, DoubleBuffer<Key>& keys, DoubleBuffer<Value>& values,
                               int n, int begin_bit, int end_bit, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    const uint64_t digit_mask = end_bit - begin_bit >= 64 ? ~uint64_t{0} : ((uint64_t{1} << (end_bit - begin_bit)) - 1);
    std::vector<int> order(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    const Key* k = keys.Current();
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return ((ordered_bits(k[a]) >> begin_bit) & digit_mask) < ((ordered_bits(k[b]) >> begin_bit) & digit_mask);
    });
    Key* key_out = keys.Alternate();
    Value* value_out = values.Alternate();
    for (int i = 0; i < n; ++i) {
      key_out[i] = k[order[static_cast<size_t>(i)]];
      value_out[i] = values.Current()[order[static_cast<size_t>(i)]];
    }
    keys.selector ^= 1;
    values.selector ^= 1;
    return cudaSuccess;
  }
};

}  // namespace cub

// The CUDA sources register their kernels with PF_CUDA_LIBRARY_IMPL(m) { m.impl(...); };
// here each becomes an operator of the proxyfast_host_model library, its schema inferred.
namespace proxyfast {
namespace host_model {
struct Library {
  torch::Library& library;
  template <typename Fn>
  void impl(const char* name, Fn fn) {
    library.def(name, fn);
  }
};
}  // namespace host_model
}  // namespace proxyfast
