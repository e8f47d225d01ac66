// lanterna's portable scalar math (header only): the element functions that the
// C-like expression templates (backends/c_like/elementwise.py) call, shared by every
// C-like backend. Each reproduces numpy's result for its op on one element.
//
// Nothing here allocates, touches a runtime or needs the C++ library beyond <cmath>,
// <cstdint> and <type_traits>, so the same code runs on the host and, compiled by
// nvcc, on a device:
//
// * LANTERNA_HD qualifies every function: `__host__ __device__` under nvcc, empty
//   elsewhere (a backend may define it before including this header);
// * LANTERNA_SCALAR_ERROR(message) is what a function does on an error (integer
//   division by zero): the cpu runtime defines it to throw its RuntimeError before
//   including this header; the default throws std::domain_error on the host and
//   traps on a device, where there are no exceptions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifndef LANTERNA_HD
#ifdef __CUDACC__
#define LANTERNA_HD __host__ __device__
#else
#define LANTERNA_HD
#endif
#endif

#ifndef LANTERNA_SCALAR_ERROR
#ifdef __CUDA_ARCH__
#define LANTERNA_SCALAR_ERROR(message) __trap()
#else
#include <stdexcept>
#define LANTERNA_SCALAR_ERROR(message) throw std::domain_error(message)
#endif
#endif

namespace lanterna {

// --- integer arithmetic wraps (two's complement), as numpy's does ---------------------------

template <class T>
LANTERNA_HD inline T wrap_add(T a, T b) {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        using U = std::make_unsigned_t<T>;
        return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    } else {
        return a + b;
    }
}

template <class T>
LANTERNA_HD inline T wrap_sub(T a, T b) {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        using U = std::make_unsigned_t<T>;
        return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
    } else {
        return a - b;
    }
}

template <class T>
LANTERNA_HD inline T wrap_mul(T a, T b) {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        using U = std::make_unsigned_t<T>;
        // Promote past int so that uint16-sized products cannot overflow int.
        using W = std::conditional_t<(sizeof(U) < sizeof(unsigned)), unsigned, U>;
        return static_cast<T>(static_cast<U>(static_cast<W>(a) * static_cast<W>(b)));
    } else {
        return a * b;
    }
}

template <class T>
LANTERNA_HD inline T wrap_neg(T a) {
    return wrap_sub(T(0), a);
}

template <class T>
LANTERNA_HD inline T abs_of(T a) {
    if constexpr (std::is_integral_v<T>) {
        return a < 0 ? wrap_neg(a) : a;
    } else {
        return std::fabs(a);
    }
}

// arith.divsi / remsi (truncating) and floordivsi, with Python's wrapping.
template <class T>
LANTERNA_HD inline T div_trunc(T a, T b) {
    if (b == 0) LANTERNA_SCALAR_ERROR("arith.divsi: division by zero");
    if (b == T(-1)) return wrap_neg(a);
    return a / b;
}

template <class T>
LANTERNA_HD inline T rem_trunc(T a, T b) {
    if (b == 0) LANTERNA_SCALAR_ERROR("arith.remsi: division by zero");
    if (b == T(-1)) return T(0);
    return a % b;
}

template <class T>
LANTERNA_HD inline T div_floor(T a, T b) {
    if (b == 0) LANTERNA_SCALAR_ERROR("arith.floordivsi: division by zero");
    if (b == T(-1)) return wrap_neg(a);
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

// --- comparisons ----------------------------------------------------------------------------

// numpy's maximum/minimum: a NaN operand wins.
template <class T>
LANTERNA_HD inline T maximum(T a, T b) {
    if constexpr (std::is_floating_point_v<T>) {
        if (a != a) return a;
        if (b != b) return b;
    }
    return a < b ? b : a;
}

template <class T>
LANTERNA_HD inline T minimum(T a, T b) {
    if constexpr (std::is_floating_point_v<T>) {
        if (a != a) return a;
        if (b != b) return b;
    }
    return b < a ? b : a;
}

// --- transcendental functions ---------------------------------------------------------------

// The float whose bits are `bits`.
LANTERNA_HD inline float float_from_bits(int32_t bits) {
#ifdef __CUDA_ARCH__
    return __int_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

// exp for float that the compiler can vectorize (glibc's expf is a call per
// element): n = rint(x log2 e), r = x - n ln 2 in two parts, a degree-6
// polynomial for exp(r) (Cephes' expf, within 2 ulp), times 2^n built from its
// exponent bits. Like expf: +inf past 88.72, NaN for NaN; results below 2^-126
// (x < -87.34) are flushed to 0 instead of going subnormal. Vectorizes only
// without -ftrapping-math (the cpu driver compiles with -fno-trapping-math).
LANTERNA_HD inline float exp(float x) {
    // std::max(std::min(x, 88.72283f), -87.4f), spelled out for device code.
    const float hi = 88.72283f < x ? 88.72283f : x;
    const float xc = hi < -87.4f ? -87.4f : hi;
    const float n = std::rint(xc * 1.44269504088896341f);
    const int32_t ti = static_cast<int32_t>(n);
    const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t e = 127 < ti ? 127 : ti;  // 2^128 is no float: its last factor 2 apart
    const float scale = float_from_bits((e + 127) << 23);
    float y = p * scale * (1.0f + static_cast<float>(ti - e));
    y = x > 88.72283f ? HUGE_VALF : y;
    y = x < -87.33654f ? 0.0f : y;
    return x != x ? x : y;
}

LANTERNA_HD inline double exp(double x) { return std::exp(x); }

// tanh for float, branch-free so loops over it vectorize: an odd polynomial
// near 0 (Cephes' tanhf, 2 ulp), 1 - 2 / (exp(2|x|) + 1) elsewhere (|x| capped
// at 9, where tanh is 1 in float). Doubles use std::tanh.
LANTERNA_HD inline float tanh(float x) {
    const float ax = std::fabs(x);
    const float z = x * x;
    const float small =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
          1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    const float big = 1.0f - 2.0f / (exp(2.0f * (9.0f < ax ? 9.0f : ax)) + 1.0f);
    return ax < 0.625f ? small : std::copysign(big, x);
}

LANTERNA_HD inline double tanh(double x) { return std::tanh(x); }

template <class T>
LANTERNA_HD inline T sigmoid(T x) {
    T e = exp(-std::fabs(x));
    return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

template <class T>
LANTERNA_HD inline T relu(T x) {
    return maximum(x, T(0));
}

template <class T>
LANTERNA_HD inline T log(T x) {
    return std::log(x);
}

template <class T>
LANTERNA_HD inline T sqrt(T x) {
    return std::sqrt(x);
}

template <class T>
LANTERNA_HD inline T pow(T x, T p) {
    return std::pow(x, p);
}

}  // namespace lanterna
