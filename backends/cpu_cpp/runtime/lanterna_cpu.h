// lanterna's C++ runtime for generated CPU modules (header only).
//
// Generated code (see backends/cpu_cpp/emitter.py) includes this header and
// calls into it for everything larger than an elementwise loop (the element
// functions themselves are backends/c_like/runtime/lanterna_scalar.h): the per-call
// arena, error reporting, BLAS, reductions, data movement, softmax, losses,
// convolution, pooling and dropout. Each kernel reproduces the numpy semantics
// of its op's `evaluate` in lanterna/ir/ln/*.py.
//
// Tensors are raw row-major pointers into the arena; shapes are static and
// passed in by the generated code.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <pthread.h>

#include <cblas.h>

// BLAS entry points; scipy-openblas32 prefixes its symbols with `scipy_`.
#ifndef LANTERNA_SGEMM
#define LANTERNA_SGEMM scipy_cblas_sgemm
#endif
#ifndef LANTERNA_DGEMM
#define LANTERNA_DGEMM scipy_cblas_dgemm
#endif

namespace lanterna {

// --- errors -----------------------------------------------------------------------------

// An index outside its extent (gather, scatter_add, nll targets): code 2.
struct IndexError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Any other runtime failure: code 1.
struct RuntimeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// `where` is what the generated code knows of the op: `'ln.gather'`, after the
// user's `file:line: ` when the op has a location (the interpreter's message,
// lanterna/ir/ln/base.py `index_error`, reads the same).
[[noreturn]] inline void index_error(const char* where, int64_t index, const std::string& what) {
    throw IndexError(std::string(where) + ": index " + std::to_string(index) +
                     " is out of range for " + what);
}

// An index into an extent of `n` with negative ones counted from the end (numpy's
// rule), or an IndexError for one outside [-n, n).
inline int64_t wrapped_index(int64_t i, int64_t n, const char* where, const char* what_prefix,
                             const char* what_suffix) {
    const int64_t r = i < 0 ? i + n : i;
    if (r < 0 || r >= n)
        index_error(where, i, what_prefix + std::to_string(n) + what_suffix);
    return r;
}

}  // namespace lanterna

// The portable scalar math of every C-like backend (wrap_add, maximum, exp, ...),
// shared with backends/c_like. Included here, after RuntimeError, so that its
// integer division by zero throws the error the entry turns into code 1.
#define LANTERNA_SCALAR_ERROR(message) throw ::lanterna::RuntimeError(message)
#include "../../c_like/runtime/lanterna_scalar.h"

namespace lanterna {

// --- the arena --------------------------------------------------------------------------

// What one call asked of its arena, in bytes: `requested` by every allocation,
// `reused` of that served by buffers released earlier in the call, `fresh`
// taken from the chunks (the call's footprint), `held` by the chunks.
struct ArenaStats {
    uint64_t requested = 0;
    uint64_t reused = 0;
    uint64_t fresh = 0;
    uint64_t held = 0;
};

// A bump allocator for one call's intermediates, with reuse: generated code
// releases a buffer after its last use (backends/cpu_cpp/emitter.py decides
// when that is safe) and the next request of the same size takes it back.
// It grows by chunks and never moves a block; `reset` (at the start of each
// call) keeps one chunk large enough for the previous call's footprint, so
// steady state allocates nothing.
class Arena {
  public:
    static constexpr size_t kAlign = 64;

    Arena() = default;
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    ~Arena() { release_chunks(); }

    static size_t rounded(size_t bytes) {
        bytes = (bytes + kAlign - 1) / kAlign * kAlign;
        return bytes == 0 ? kAlign : bytes;
    }

    void* allocate(size_t bytes) {
        bytes = rounded(bytes);
        stats_.requested += bytes;
        for (FreeList& f : free_) {
            if (f.bytes == bytes && !f.blocks.empty()) {
                void* p = f.blocks.back();
                f.blocks.pop_back();
                stats_.reused += bytes;
                return p;
            }
        }
        if (chunks_.empty() || used_ + bytes > chunks_.back().size) grow(bytes);
        Chunk& c = chunks_.back();
        void* p = c.data + used_;
        used_ += bytes;
        stats_.fresh += bytes;
        return p;
    }

    // Gives a buffer of `bytes` back for reuse within this call.
    void release(const void* p, size_t bytes) {
        bytes = rounded(bytes);
        void* q = const_cast<void*>(p);
#ifdef LANTERNA_POISON_RELEASED
        std::memset(q, 0xff, bytes);  // NaN for floats: a use after release shows in tests
#endif
        for (FreeList& f : free_) {
            if (f.bytes == bytes) {
                f.blocks.push_back(q);
                return;
            }
        }
        free_.push_back({bytes, {q}});
    }

    void reset() {
        if (chunks_.size() > 1) {
            size_t want = std::max<size_t>(stats_.fresh, chunks_.back().size);
            release_chunks();
            grow(want);
        }
        used_ = 0;
        stats_ = ArenaStats{};
        for (FreeList& f : free_) f.blocks.clear();
    }

    ArenaStats stats() const {
        ArenaStats s = stats_;
        for (const Chunk& c : chunks_) s.held += c.size;
        return s;
    }

  private:
    struct Chunk {
        char* data;
        size_t size;
    };
    struct FreeList {
        size_t bytes;
        std::vector<void*> blocks;
    };

    void grow(size_t bytes) {
        size_t size = std::max<size_t>(bytes, chunks_.empty() ? (size_t(1) << 20) : 2 * chunks_.back().size);
        void* p = ::operator new(size, std::align_val_t(kAlign));
        chunks_.push_back({static_cast<char*>(p), size});
        used_ = 0;
    }

    void release_chunks() {
        for (Chunk& c : chunks_) ::operator delete(c.data, std::align_val_t(kAlign));
        chunks_.clear();
        used_ = 0;
    }

    std::vector<Chunk> chunks_;
    std::vector<FreeList> free_;
    size_t used_ = 0;
    ArenaStats stats_;
};

// One arena per thread, reused across calls of every generated module loaded
// in this process (a call resets it on entry).
inline Arena& arena() {
    static thread_local Arena a;
    return a;
}

template <class T>
inline T* alloc(int64_t n) {
    return static_cast<T*>(arena().allocate(sizeof(T) * static_cast<size_t>(n)));
}

inline void release(const void* p, size_t bytes) { arena().release(p, bytes); }

template <class T>
inline T* zeros(int64_t n) {
    T* p = alloc<T>(n);
    if (n) std::memset(static_cast<void*>(p), 0, sizeof(T) * static_cast<size_t>(n));
    return p;
}

template <class T>
inline T* copy(const T* src, int64_t n) {
    T* p = alloc<T>(n);
    if (n) std::memcpy(static_cast<void*>(p), src, sizeof(T) * static_cast<size_t>(n));
    return p;
}

template <class T>
inline T* filled(int64_t n, T value) {
    T* p = alloc<T>(n);
    for (int64_t i = 0; i < n; ++i) p[i] = value;
    return p;
}

// --- stacks -----------------------------------------------------------------------------

// `!ad.stack<T>`: what a backward loop needs from its forward loop. Shared, so
// closures that capture a stack see the same one.
template <class T>
using Stack = std::shared_ptr<std::vector<T>>;

template <class T>
inline Stack<T> new_stack() {
    return std::make_shared<std::vector<T>>();
}

template <class T>
inline T pop(const Stack<T>& s) {
    if (s->empty()) throw RuntimeError("'ad.pop' of an empty stack");
    T v = std::move(s->back());
    s->pop_back();
    return v;
}

// --- deferred products: the log ---------------------------------------------------------

// Products of small rank added into an adjoint cell (a weight's gradient gets
// x g^T at every use of the weight) are logged here and added as one product
// when the cell is read (`flush_products`, below gemm): one pass over the cell
// instead of one per use. Keyed by the cell's address; a cell made at an address
// drops what an earlier, dead cell there had left (`drop_products`), and every
// call starts with an empty log.
template <class T>
struct PendingProducts {
    const T* cell = nullptr;
    int64_t m = 0, n = 0, rows = 0;
    std::vector<T> a, b;  // rows x m (the columns of op(A)), rows x n (the rows of op(B))
};

template <class T>
struct ProductLog {
    std::vector<PendingProducts<T>> active, spare;

    PendingProducts<T>* find(const T* cell) {
        for (auto& p : active)
            if (p.cell == cell) return &p;
        return nullptr;
    }
    void retire(PendingProducts<T>* p) {
        p->rows = 0;
        p->cell = nullptr;
        spare.push_back(std::move(*p));
        if (p != &active.back()) *p = std::move(active.back());
        active.pop_back();
    }
    void clear() {
        while (!active.empty()) retire(&active.back());
    }
};

template <class T>
inline ProductLog<T>& product_log() {
    static thread_local ProductLog<T> log;
    return log;
}

template <class T>
inline void drop_products(const T* cell) {
    auto& log = product_log<T>();
    if (auto* p = log.find(cell)) log.retire(p);
}

// --- the entry point --------------------------------------------------------------------

// Stack guard: every generated function and closure checks, on entry, that
// the stack has room left (LANTERNA_STACK_CHECK); when it has not, the call
// unwinds with StackExhausted instead of overflowing into a crash.
struct StackExhausted : std::exception {
    const char* what() const noexcept override { return "stack exhausted"; }
};

constexpr int kStackExhausted = 3;
constexpr size_t kBigStack = size_t(4) << 30;  // reserved, touched only as used
constexpr size_t kStackMargin = size_t(256) << 10;

inline thread_local uintptr_t stack_floor = 0;
inline thread_local bool stack_floor_known = false;

// Once per thread: finding the main thread's stack reads /proc/self/maps,
// far too slow to do on every call.
inline void set_stack_floor() {
    if (stack_floor_known) return;
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    stack_floor = size > 2 * kStackMargin ? reinterpret_cast<uintptr_t>(addr) + kStackMargin : 0;
    stack_floor_known = true;
}

inline void check_stack() {
    char probe = 0;
    if (reinterpret_cast<uintptr_t>(&probe) < stack_floor) throw StackExhausted();
}

#define LANTERNA_STACK_CHECK() ::lanterna::check_stack()

// Runs `body` with a fresh arena and turns exceptions into return codes.
template <class Body>
inline int run_guarded(char* err, size_t errlen, Body& body) {
    auto report = [&](const char* msg) {
        if (err && errlen) std::snprintf(err, errlen, "%s", msg);
    };
    set_stack_floor();
    try {
        arena().reset();
        product_log<float>().clear();
        product_log<double>().clear();
        body();
        return 0;
    } catch (const StackExhausted&) {
        return kStackExhausted;
    } catch (const IndexError& e) {
        report(e.what());
        return 2;
    } catch (const std::bad_alloc&) {
        report("out of memory");
        return 1;
    } catch (const std::exception& e) {
        report(e.what());
        return 1;
    }
}

// Runs the entry's body: on this thread, or again on a big stack when deep
// recursion exhausted this one.
template <class Body>
inline int run_entry(char* err, size_t errlen, Body&& body) {
    int rc = run_guarded(err, errlen, body);
    if (rc != kStackExhausted) return rc;
    // Deep recursion (a long differentiated loop is a chain of callbacks) ran
    // out of this thread's stack: run the whole call again on a thread with a
    // large stack. Calls are pure until the final copy into the outputs, so a
    // rerun computes the same results.
    struct Job {
        Body* body;
        char* err;
        size_t errlen;
        int rc;
    } job{&body, err, errlen, 1};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kBigStack);
    pthread_t thread;
    auto run = [](void* p) -> void* {
        auto* j = static_cast<Job*>(p);
        j->rc = run_guarded(j->err, j->errlen, *j->body);
        return nullptr;
    };
    int created = pthread_create(&thread, &attr, run, &job);
    pthread_attr_destroy(&attr);
    if (created != 0) {
        if (err && errlen) std::snprintf(err, errlen, "%s", "recursion too deep for the stack, "
                                         "and no thread with a larger stack could be started");
        return 1;
    }
    pthread_join(thread, nullptr);
    if (job.rc == kStackExhausted) {
        if (err && errlen)
            std::snprintf(err, errlen, "recursion too deep: the generated code needs more than "
                                       "%zu MiB of stack (a very long differentiated loop?)",
                          kBigStack >> 20);
        return 1;
    }
    return job.rc;
}

// Copies a result into its output buffer. Outputs may alias inputs (donated
// buffers), so the generated code first stages every result that lies inside
// an input buffer (`stage`), then copies all of them (`store`).
struct Buffer {
    const void* data;
    size_t bytes;
};

inline bool overlaps(const void* p, size_t n, const Buffer& b) {
    auto a0 = reinterpret_cast<uintptr_t>(p), b0 = reinterpret_cast<uintptr_t>(b.data);
    return n && b.bytes && a0 < b0 + b.bytes && b0 < a0 + n;
}

template <class T, size_t N>
inline const T* stage(const T* result, int64_t n, const std::array<Buffer, N>& inputs) {
    size_t bytes = sizeof(T) * static_cast<size_t>(n);
    for (const Buffer& b : inputs)
        if (overlaps(result, bytes, b)) return copy(result, n);
    return result;
}

// The caller's output buffers, for the entry's results to be written straight
// into (`output`), while a `Destinations` is alive on this thread. An output that
// overlaps an input (a donated buffer) is not written before the call ends: the
// result goes to the arena and is copied at the end, as inputs must stay intact
// while the call runs (and for a rerun on a bigger stack).
struct Destinations {
    Destinations(const Buffer* inputs, size_t n_inputs, void* const* outputs) {
        current() = {inputs, n_inputs, outputs};
    }
    ~Destinations() { current() = {}; }
    Destinations(const Destinations&) = delete;
    Destinations& operator=(const Destinations&) = delete;

    struct State {
        const Buffer* inputs = nullptr;
        size_t n_inputs = 0;
        void* const* outputs = nullptr;
    };
    static State& current() {
        static thread_local State state;
        return state;
    }
};

template <class T>
inline T* output(int64_t j, int64_t n) {
    const Destinations::State& d = Destinations::current();
    size_t bytes = sizeof(T) * static_cast<size_t>(n);
    void* out = d.outputs ? d.outputs[j] : nullptr;
    for (size_t i = 0; out && i < d.n_inputs; ++i)
        if (overlaps(out, bytes, d.inputs[i])) out = nullptr;
    return out ? static_cast<T*>(out) : alloc<T>(n);
}

template <class T>
inline void store(void* out, const T* result, int64_t n) {
    if (n && out != static_cast<const void*>(result))
        std::memmove(out, result, sizeof(T) * static_cast<size_t>(n));
}

// --- closures ---------------------------------------------------------------------------

// A closure that can call itself (`cont.lambda rec %self`). The body gets the
// closure as its first argument. The shared holder keeps only a weak reference
// to itself, so no reference cycle (and no leak) arises; while the closure runs,
// its caller holds a strong reference.
template <class R, class... A, class Body>
inline std::function<R(A...)> recursive(Body body) {
    using Fn = std::function<R(A...)>;
    auto holder = std::make_shared<Fn>();
    std::weak_ptr<Fn> weak = holder;
    *holder = [weak, body](A... args) -> R {
        std::shared_ptr<Fn> strong = weak.lock();
        Fn self = [strong](A... inner) -> R { return (*strong)(inner...); };
        return body(self, args...);
    };
    return [holder](A... args) -> R { return (*holder)(args...); };
}

// --- data movement ----------------------------------------------------------------------

// dst[offset_d + sum i_k * dstride_k] = src[offset_s + sum i_k * sstride_k]
// over the index space `shape`.
template <class T, size_t R>
inline void copy_strided(T* dst, const std::array<int64_t, R>& dstride, int64_t doff, const T* src,
                         const std::array<int64_t, R>& sstride, int64_t soff,
                         const std::array<int64_t, R>& shape) {
    if constexpr (R == 0) {
        dst[doff] = src[soff];
    } else {
        for (int64_t d : shape)
            if (d == 0) return;
        std::array<int64_t, R> idx{};
        const int64_t inner = shape[R - 1], ds = dstride[R - 1], ss = sstride[R - 1];
        while (true) {
            int64_t od = doff, os = soff;
            for (size_t k = 0; k + 1 < R; ++k) {
                od += idx[k] * dstride[k];
                os += idx[k] * sstride[k];
            }
            for (int64_t i = 0; i < inner; ++i) dst[od + i * ds] = src[os + i * ss];
            // Advance the outer index (all but the last dimension).
            int64_t k = static_cast<int64_t>(R) - 2;
            for (; k >= 0; --k) {
                if (++idx[k] < shape[k]) break;
                idx[k] = 0;
            }
            if (k < 0) return;
        }
    }
}

template <class T, class I>
inline void gather(const T* table, const I* idx, T* out, int64_t n, int64_t rows, int64_t row,
                   const char* where) {
    for (int64_t j = 0; j < n; ++j) {
        int64_t r = wrapped_index(static_cast<int64_t>(idx[j]), rows, where, "a table of ", " rows");
        if (row) std::memcpy(out + j * row, table + r * row, sizeof(T) * static_cast<size_t>(row));
    }
}

template <class T, class I>
inline void scatter_add(const T* updates, const I* idx, T* out, int64_t n, int64_t rows, int64_t row,
                        const char* where) {
    for (int64_t j = 0; j < n; ++j)
        wrapped_index(static_cast<int64_t>(idx[j]), rows, where, "a result of ", " rows");
    std::memset(static_cast<void*>(out), 0, sizeof(T) * static_cast<size_t>(rows * row));
    for (int64_t j = 0; j < n; ++j) {
        const int64_t r = static_cast<int64_t>(idx[j]);
        T* dst = out + (r < 0 ? r + rows : r) * row;
        const T* src = updates + j * row;
        for (int64_t i = 0; i < row; ++i) dst[i] = wrap_add(dst[i], src[i]);
    }
}

// --- reductions -------------------------------------------------------------------------

// Floating-point sums accumulate in double, so a float32 sum is rounded once, at
// the end (a float accumulator stops counting at 2^24: the sum of 2^25 ones came
// out as 2^24), and pairwise, so a float64 sum's error grows with log n, not n.
// Integer sums wrap, and wrapping addition does not care about the order.

// x[0] + ... + x[n-1] in double, pairwise as numpy's pairwise_sum: a block of up
// to 128 elements is summed with 8 partial sums (a loop the compiler turns into
// vector adds), and longer runs are split in halves summed recursively.
template <class T>
inline double pairwise_sum(const T* x, int64_t n) {
    if (n < 8) {
        double s = n ? static_cast<double>(x[0]) : 0.0;
        for (int64_t i = 1; i < n; ++i) s += static_cast<double>(x[i]);
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; ++k) r[k] = static_cast<double>(x[k]);
        int64_t i = 8;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; ++k) r[k] += static_cast<double>(x[i + k]);
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) s += static_cast<double>(x[i]);
        return s;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(x, half) + pairwise_sum(x + half, n - half);
}

// Reduce the middle extent of x viewed as [outer, n, inner] into out [outer, inner],
// dividing each sum by `count` (a mean's last step; 1 for a sum).
template <class T>
inline void reduce_sum(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                       int64_t count = 1) {
    if constexpr (!std::is_floating_point_v<T>) {
        (void)count;
        for (int64_t o = 0; o < outer; ++o) {
            T* dst = out + o * inner;
            for (int64_t i = 0; i < inner; ++i) dst[i] = T(0);
            for (int64_t r = 0; r < n; ++r) {
                const T* src = x + (o * n + r) * inner;
                for (int64_t i = 0; i < inner; ++i) dst[i] = wrap_add(dst[i], src[i]);
            }
        }
    } else {
        const double divisor = static_cast<double>(count);
        if (inner == 1) {
            for (int64_t o = 0; o < outer; ++o)
                out[o] = static_cast<T>(pairwise_sum(x + o * n, n) / divisor);
            return;
        }
        // Columns: rows are added (vectorized along the row) into `part` a block of
        // kBlock rows at a time, and the blocks into `total`: the error grows with
        // kBlock + n / kBlock, not n.
        constexpr int64_t kBlock = 128;
        // Scratch outside the arena: the arena's statistics count the program's
        // values, and a buffer released here would look like reuse to them.
        static thread_local std::vector<double> scratch;
        if (scratch.size() < static_cast<size_t>(2 * inner)) scratch.resize(2 * inner);
        double* total = scratch.data();
        double* part = total + inner;
        for (int64_t o = 0; o < outer; ++o) {
            for (int64_t i = 0; i < inner; ++i) total[i] = 0.0;
            for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
                const int64_t r1 = std::min(n, r0 + kBlock);
                const T* first = x + (o * n + r0) * inner;
                for (int64_t i = 0; i < inner; ++i) part[i] = static_cast<double>(first[i]);
                for (int64_t r = r0 + 1; r < r1; ++r) {
                    const T* src = x + (o * n + r) * inner;
                    for (int64_t i = 0; i < inner; ++i) part[i] += static_cast<double>(src[i]);
                }
                for (int64_t i = 0; i < inner; ++i) total[i] += part[i];
            }
            T* dst = out + o * inner;
            for (int64_t i = 0; i < inner; ++i) dst[i] = static_cast<T>(total[i] / divisor);
        }
    }
}

template <class T>
inline void reduce_max(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
    for (int64_t o = 0; o < outer; ++o) {
        T* dst = out + o * inner;
        const T* first = x + o * n * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] = first[i];
        for (int64_t r = 1; r < n; ++r) {
            const T* src = x + (o * n + r) * inner;
            for (int64_t i = 0; i < inner; ++i) dst[i] = maximum(dst[i], src[i]);
        }
    }
}

// --- matmul -----------------------------------------------------------------------------

// The BLAS routine for each element type.
inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                      const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
                      blasint ldc) {
    LANTERNA_SGEMM(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                      const double* a, blasint lda, const double* b, blasint ldb, double beta,
                      double* c, blasint ldc) {
    LANTERNA_DGEMM(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Row-major C[M, N] = A[M, K] @ B[K, N], or C += A @ B with `beta` 1 (A, B, C contiguous
// unless lda/ldb say otherwise; `ta`/`tb` read A or B transposed).
template <class T>
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T* c, int64_t ldc, int beta = 0) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (beta) return;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = T(0);
        return;
    }
    auto dim = [](int64_t v) { return static_cast<blasint>(v); };
    blas_gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, dim(m), dim(n),
              dim(k), a, dim(lda), b, dim(ldb), beta ? T(1) : T(0), c, dim(ldc));
}

// C[m, n] += op(A) @ op(B) with op(A) m x k and k small, logged for the cell `c`
// (see "deferred products"). A log that would outgrow the cell is added in at once.
template <class T>
inline void defer_product(T* c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a,
                          int64_t lda, const T* b, int64_t ldb) {
    auto& log = product_log<T>();
    PendingProducts<T>* p = log.find(c);
    if (p == nullptr) {
        if (log.spare.empty()) {
            log.active.emplace_back();
        } else {
            log.active.push_back(std::move(log.spare.back()));
            log.spare.pop_back();
        }
        p = &log.active.back();
        p->cell = c;
        p->rows = 0;
    }
    p->m = m;
    p->n = n;
    int64_t rows = p->rows + k;
    p->a.resize(static_cast<size_t>(rows * m));
    p->b.resize(static_cast<size_t>(rows * n));
    T* ra = p->a.data() + p->rows * m;
    T* rb = p->b.data() + p->rows * n;
    for (int64_t r = 0; r < k; ++r) {
        for (int64_t i = 0; i < m; ++i) ra[r * m + i] = ta ? a[r * lda + i] : a[i * lda + r];
        for (int64_t j = 0; j < n; ++j) rb[r * n + j] = tb ? b[j * ldb + r] : b[r * ldb + j];
    }
    p->rows = rows;
    if (rows * (m + n) >= m * n) {
        gemm(true, false, m, n, rows, p->a.data(), m, p->b.data(), n, c, n, 1);
        p->rows = 0;
    }
}

// Adds the products logged for `c` into it; the generated code calls this before
// it reads a cell that may have some.
template <class T>
inline void flush_products(T* c) {
    auto& log = product_log<T>();
    PendingProducts<T>* p = log.find(c);
    if (p == nullptr) return;
    gemm(true, false, p->m, p->n, p->rows, p->a.data(), p->m, p->b.data(), p->n, c, p->n, 1);
    log.retire(p);
}

// `batch` independent products; a stride of 0 shares an operand across the batch.
template <class T>
inline void matmul(const T* a, int64_t a_stride, const T* b, int64_t b_stride, T* c, int64_t batch,
                   int64_t m, int64_t n, int64_t k) {
    for (int64_t i = 0; i < batch; ++i)
        gemm(false, false, m, n, k, a + i * a_stride, k, b + i * b_stride, n, c + i * m * n, n);
}

// --- softmax and losses -----------------------------------------------------------------

// x viewed as [outer, n, inner], normalized along n.
template <class T>
inline void softmax(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
            const T* src = x + o * n * inner + i;
            T* dst = y + o * n * inner + i;
            T mx = src[0];
            for (int64_t r = 1; r < n; ++r) mx = maximum(mx, src[r * inner]);
            if (inner == 1) {
                // A contiguous row: the exponentials in a loop of their own (it
                // vectorizes; one with the running total in it would not), then
                // their pairwise sum. y may be x's own buffer: each loop reads an
                // element before it writes it.
                if (log) {
                    static thread_local std::vector<T> scratch;
                    if (scratch.size() < static_cast<size_t>(n)) scratch.resize(n);
                    T* e = scratch.data();
                    for (int64_t r = 0; r < n; ++r) dst[r] = src[r] - mx;
                    for (int64_t r = 0; r < n; ++r) e[r] = exp(dst[r]);
                    const T lt = static_cast<T>(std::log(pairwise_sum(e, n)));
                    for (int64_t r = 0; r < n; ++r) dst[r] -= lt;
                } else {
                    for (int64_t r = 0; r < n; ++r) dst[r] = exp(src[r] - mx);
                    const double total = pairwise_sum(dst, n);
                    const T t = static_cast<T>(total);
                    for (int64_t r = 0; r < n; ++r) dst[r] /= t;
                }
                continue;
            }
            double total = 0.0;  // in double, as the reductions (a long row of float32)
            for (int64_t r = 0; r < n; ++r) {
                T shifted = src[r * inner] - mx;
                T e = exp(shifted);
                total += static_cast<double>(e);
                dst[r * inner] = log ? shifted : e;
            }
            if (log) {
                T lt = static_cast<T>(std::log(total));
                for (int64_t r = 0; r < n; ++r) dst[r * inner] -= lt;
            } else {
                T t = static_cast<T>(total);
                for (int64_t r = 0; r < n; ++r) dst[r * inner] /= t;
            }
        }
}

// -sum_i logp[i, target[i]], divided by n when `mean`.
template <class T, class I>
inline T nll_loss(const T* logp, const I* target, int64_t n, int64_t c, bool mean,
                  const char* where) {
    // Class targets do not wrap: -1 is no class (as in PyTorch), not the last one.
    for (int64_t i = 0; i < n; ++i) {
        int64_t t = static_cast<int64_t>(target[i]);
        if (t < 0 || t >= c) index_error(where, t, std::to_string(c) + " classes");
    }
    double total = 0.0;  // in double, as the reductions
    for (int64_t i = 0; i < n; ++i)
        total += static_cast<double>(logp[i * c + static_cast<int64_t>(target[i])]);
    return static_cast<T>(mean ? -total / static_cast<double>(n) : -total);
}

// --- convolution and pooling ------------------------------------------------------------

struct Window {
    int64_t n, c, h, w;     // input
    int64_t kh, kw;         // kernel
    int64_t sh, sw;         // stride
    int64_t ph, pw;         // padding
    int64_t oh() const { return (h + 2 * ph - kh) / sh + 1; }
    int64_t ow() const { return (w + 2 * pw - kw) / sw + 1; }
};

// One image's windows as columns: col[C*KH*KW, OH*OW], zeros where a window
// overhangs the padding.
template <class T>
inline void im2col(const T* img, T* col, const Window& g) {
    const int64_t oh = g.oh(), ow = g.ow(), cols = oh * ow;
    for (int64_t ch = 0; ch < g.c; ++ch)
        for (int64_t u = 0; u < g.kh; ++u)
            for (int64_t v = 0; v < g.kw; ++v) {
                T* dst = col + ((ch * g.kh + u) * g.kw + v) * cols;
                for (int64_t i = 0; i < oh; ++i) {
                    int64_t r = i * g.sh + u - g.ph;
                    for (int64_t j = 0; j < ow; ++j) {
                        int64_t s = j * g.sw + v - g.pw;
                        bool inside = r >= 0 && r < g.h && s >= 0 && s < g.w;
                        dst[i * ow + j] = inside ? img[(ch * g.h + r) * g.w + s] : T(0);
                    }
                }
            }
}

// y[N, O, OH, OW] = correlation of x[N, C, H, W] with w[O, C, KH, KW]:
// per image, im2col into [C*KH*KW, OH*OW], then one GEMM.
template <class T>
inline void conv2d(const T* x, const T* wt, T* y, const Window& g, int64_t o) {
    const int64_t rows = g.c * g.kh * g.kw, cols = g.oh() * g.ow();
    T* col = alloc<T>(rows * cols);
    for (int64_t n = 0; n < g.n; ++n) {
        im2col(x + n * g.c * g.h * g.w, col, g);
        gemm(false, false, o, cols, rows, wt, rows, col, cols, y + n * o * cols, cols);
    }
    release(col, sizeof(T) * static_cast<size_t>(rows * cols));
}

// The adjoint of conv2d's input: dx[N, C, H, W] from gy[N, O, OH, OW] and
// w[O, C, KH, KW]. Per image, col = W^T @ gy_n, then col2im adds each column
// entry back to the input position it was read from.
template <class T>
inline void conv2d_input_grad(const T* gy, const T* wt, T* dx, const Window& g, int64_t o) {
    const int64_t oh = g.oh(), ow = g.ow(), rows = g.c * g.kh * g.kw, cols = oh * ow;
    T* col = alloc<T>(rows * cols);
    std::memset(static_cast<void*>(dx), 0, sizeof(T) * static_cast<size_t>(g.n * g.c * g.h * g.w));
    for (int64_t n = 0; n < g.n; ++n) {
        gemm(true, false, rows, cols, o, wt, rows, gy + n * o * cols, cols, col, cols);
        T* img = dx + n * g.c * g.h * g.w;
        for (int64_t ch = 0; ch < g.c; ++ch)
            for (int64_t u = 0; u < g.kh; ++u)
                for (int64_t v = 0; v < g.kw; ++v) {
                    const T* src = col + ((ch * g.kh + u) * g.kw + v) * cols;
                    for (int64_t i = 0; i < oh; ++i) {
                        int64_t r = i * g.sh + u - g.ph;
                        if (r < 0 || r >= g.h) continue;
                        T* dst = img + (ch * g.h + r) * g.w;
                        for (int64_t j = 0; j < ow; ++j) {
                            int64_t s = j * g.sw + v - g.pw;
                            if (s >= 0 && s < g.w) dst[s] += src[i * ow + j];
                        }
                    }
                }
    }
    release(col, sizeof(T) * static_cast<size_t>(rows * cols));
}

// The adjoint of conv2d's weight: dw[O, C, KH, KW] = sum over images of
// gy_n[O, OH*OW] @ im2col(x_n)^T.
template <class T>
inline void conv2d_weight_grad(const T* x, const T* gy, T* dw, const Window& g, int64_t o) {
    const int64_t rows = g.c * g.kh * g.kw, cols = g.oh() * g.ow();
    if (g.n == 0) std::memset(static_cast<void*>(dw), 0, sizeof(T) * static_cast<size_t>(o * rows));
    T* col = alloc<T>(rows * cols);
    for (int64_t n = 0; n < g.n; ++n) {
        im2col(x + n * g.c * g.h * g.w, col, g);
        gemm(false, true, o, rows, cols, gy + n * o * cols, cols, col, cols, dw, rows, n > 0);
    }
    release(col, sizeof(T) * static_cast<size_t>(rows * cols));
}

template <class T>
inline void max_pool2d(const T* x, T* y, const Window& g) {
    const int64_t oh = g.oh(), ow = g.ow();
    for (int64_t p = 0; p < g.n * g.c; ++p) {
        const T* img = x + p * g.h * g.w;
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
                T best = -std::numeric_limits<T>::infinity();
                for (int64_t u = 0; u < g.kh; ++u)
                    for (int64_t v = 0; v < g.kw; ++v) {
                        int64_t r = i * g.sh + u - g.ph, s = j * g.sw + v - g.pw;
                        if (r >= 0 && r < g.h && s >= 0 && s < g.w) best = maximum(best, img[r * g.w + s]);
                    }
                y[(p * oh + i) * ow + j] = best;
            }
    }
}

// Padding counts as zeros; every window divides by KH * KW.
template <class T>
inline void avg_pool2d(const T* x, T* y, const Window& g) {
    const int64_t oh = g.oh(), ow = g.ow();
    const T area = static_cast<T>(g.kh * g.kw);
    for (int64_t p = 0; p < g.n * g.c; ++p) {
        const T* img = x + p * g.h * g.w;
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
                T total = T(0);
                for (int64_t u = 0; u < g.kh; ++u)
                    for (int64_t v = 0; v < g.kw; ++v) {
                        int64_t r = i * g.sh + u - g.ph, s = j * g.sw + v - g.pw;
                        if (r >= 0 && r < g.h && s >= 0 && s < g.w) total += img[r * g.w + s];
                    }
                y[(p * oh + i) * ow + j] = total / area;
            }
    }
}

// Each window's adjoint split evenly among the elements equal to its maximum
// (padding is -inf and counts as a tie only when the maximum is -inf).
template <class T>
inline void max_pool2d_grad(const T* x, const T* gy, T* dx, const Window& g) {
    const int64_t oh = g.oh(), ow = g.ow();
    std::memset(static_cast<void*>(dx), 0, sizeof(T) * static_cast<size_t>(g.n * g.c * g.h * g.w));
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int64_t p = 0; p < g.n * g.c; ++p) {
        const T* img = x + p * g.h * g.w;
        T* out = dx + p * g.h * g.w;
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
                T best = ninf;
                for (int64_t u = 0; u < g.kh; ++u)
                    for (int64_t v = 0; v < g.kw; ++v) {
                        int64_t r = i * g.sh + u - g.ph, s = j * g.sw + v - g.pw;
                        if (r >= 0 && r < g.h && s >= 0 && s < g.w) best = maximum(best, img[r * g.w + s]);
                    }
                int64_t hits = 0;
                for (int64_t u = 0; u < g.kh; ++u)
                    for (int64_t v = 0; v < g.kw; ++v) {
                        int64_t r = i * g.sh + u - g.ph, s = j * g.sw + v - g.pw;
                        bool inside = r >= 0 && r < g.h && s >= 0 && s < g.w;
                        T value = inside ? img[r * g.w + s] : ninf;
                        if (value == best) ++hits;
                    }
                T share = gy[(p * oh + i) * ow + j] / static_cast<T>(hits);
                for (int64_t u = 0; u < g.kh; ++u)
                    for (int64_t v = 0; v < g.kw; ++v) {
                        int64_t r = i * g.sh + u - g.ph, s = j * g.sw + v - g.pw;
                        if (r >= 0 && r < g.h && s >= 0 && s < g.w && img[r * g.w + s] == best)
                            out[r * g.w + s] += share;
                    }
            }
    }
}

// --- dropout ----------------------------------------------------------------------------

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

inline uint64_t splitmix64(uint64_t z) {
    z += kGoldenGamma;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Element i is kept iff (splitmix64(seed * gamma + i) >> 40) / 2^24 >= rate.
template <class T>
inline void dropout(const T* x, int64_t seed, T* y, int64_t n, double rate) {
    const uint64_t base = static_cast<uint64_t>(seed) * kGoldenGamma;
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    for (int64_t i = 0; i < n; ++i) {
        double u = static_cast<double>(splitmix64(base + static_cast<uint64_t>(i)) >> 40) / 16777216.0;
        y[i] = u >= rate ? x[i] * scale : T(0);
    }
}

}  // namespace lanterna
