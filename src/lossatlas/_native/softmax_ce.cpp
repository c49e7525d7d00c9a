// lossatlas native CPU kernel for the cross-entropy family (CE, LA, BS, VS, LDAM, focal).
//
// Compiled on first use by lossatlas/_native/__init__.py (a C++ compiler and nothing else:
// no PyTorch headers) and called through ctypes on the tensors' memory. It exists because at
// small C (N·C below ~10^5) a loss's fwd+bwd is dominated by the fixed cost of each ATen call
// and autograd node, not by arithmetic: this does the whole forward in one call and the whole
// backward in one call.
//
//   u_ij = z_ij · a_j · s + b_j + d_{y_i} [j = y_i]     (a_j may divide instead: z_ij / a_j)
//   ce_i = logsumexp_j u_ij − u_{i y_i},   q_i = 1 − p_{i y_i}
//   ℓ_i  = α · w_{y_i} · q_i^γ · ce_i      (γ = 0: cross-entropy)
//   ∂ℓ_i/∂u_ij = c_i (p_ij − [j = y_i]),  c_i = α w_{y_i} (q^γ + γ q^{γ−1} p_t ce_i)
//
// Rows whose target equals ignore_index contribute nothing (loss 0, gradient 0).
// Reductions: sum (mode 0), Σ ℓ / Σ w (mode 1, torch's weighted mean: 0/0 = NaN),
// Σ ℓ / max(#rows kept, 1) (mode 2, the focal loss's mean).
//
// The exponential is a branch-free polynomial (Cody–Waite reduction, 2^n by exponent bits)
// that the compiler vectorises; it is accurate to a few ulp, returns 0 below the smallest
// normal's exponent, and propagates NaN.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LA_CLONES
#endif

namespace {

// Per precision: the clamp range [lo, hi], the rounding constant (1.5 · 2^mantissa: adding
// it rounds to an integer), the Cody–Waite reduction r = x − n·ln2 and the polynomial e^r.
template <typename T>
struct ExpTraits;

template <>
struct ExpTraits<float> {
  using Bits = int32_t;
  static constexpr int mantissa = 23, bias = 127;
  static constexpr float lo = -87.3365448f, hi = 88.7228394f, magic = 12582912.0f, log2e = 1.44269504088896341f;
  static float reduce(float x, float n) { return (x - n * 0.693359375f) + n * 2.12194440e-4f; }
  static float poly(float r) {  // Cephes expf
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
  }
};

template <>
struct ExpTraits<double> {
  using Bits = int64_t;
  static constexpr int mantissa = 52, bias = 1023;
  static constexpr double lo = -708.3964185322641, hi = 709.782712893384, magic = 6755399441055744.0,
                          log2e = 1.4426950408889634;
  static double reduce(double x, double n) { return (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10; }
  static double poly(double r) {  // Taylor series to r^13 on |r| ≤ ln2/2: truncation below 1e-17 relative
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
  }
};

template <typename T>
inline T exp_poly(T x) {
  using E = ExpTraits<T>;
  using Bits = typename E::Bits;
  const T xc = x < E::lo ? E::lo : (x > E::hi ? E::hi : x);
  const T n = (xc * E::log2e + E::magic) - E::magic;
  T y = E::poly(E::reduce(xc, n));
  // 2^n in two factors so that n at the top of the range does not overflow the exponent field.
  const int32_t ni = static_cast<int32_t>(n);  // |n| ≤ 1100; int32 conversion vectorises, int64 does not
  const Bits e1 = (static_cast<Bits>(ni >> 1) + E::bias) << E::mantissa;
  const Bits e2 = (static_cast<Bits>(ni - (ni >> 1)) + E::bias) << E::mantissa;
  T s1, s2;
  std::memcpy(&s1, &e1, sizeof s1);
  std::memcpy(&s2, &e2, sizeof s2);
  y = y * s1 * s2;
  y = x < E::lo ? T(0) : y;
  y = x > E::hi ? std::numeric_limits<T>::infinity() : y;
  return x != x ? x : y;
}

LA_CLONES void exp_inplace_f32(float* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) x[k] = exp_poly(x[k]);
}

LA_CLONES void exp_inplace_f64(double* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) x[k] = exp_poly(x[k]);
}

inline void exp_inplace(float* x, int64_t n) { exp_inplace_f32(x, n); }
inline void exp_inplace(double* x, int64_t n) { exp_inplace_f64(x, n); }

// u = z · a · s + b (or z / a · s + b); each case is its own simple loop.
template <typename T>
void affine(const T* z, T* u, int64_t n, int64_t c, const T* a, int divide, T s, const T* b) {
  const int64_t nc = n * c;
  if (a) {
    for (int64_t i = 0; i < n; ++i) {
      const T* zi = z + i * c;
      T* ui = u + i * c;
      if (divide) {
        for (int64_t j = 0; j < c; ++j) ui[j] = zi[j] / a[j];
      } else {
        for (int64_t j = 0; j < c; ++j) ui[j] = zi[j] * a[j];
      }
    }
    if (s != T(1)) {
      for (int64_t k = 0; k < nc; ++k) u[k] = u[k] * s;
    }
  } else if (s != T(1)) {
    for (int64_t k = 0; k < nc; ++k) u[k] = z[k] * s;
  } else {
    std::memcpy(u, z, sizeof(T) * nc);
  }
  if (b) {
    for (int64_t i = 0; i < n; ++i) {
      T* ui = u + i * c;
      for (int64_t j = 0; j < c; ++j) ui[j] = b[j] + ui[j];
    }
  }
}

template <typename T>
T power(T q, double gamma) {
  if (gamma == 1.0) return q;
  if (gamma == 2.0) return q * q;
  return std::pow(q, static_cast<T>(gamma));
}

// Forward. p [N, C] receives e_ij = exp(u_ij − max_j u_ij); coef [2N] the gradient
// coefficients c_i, then the rows' 1 / Σ_j e_ij (so p_ij = e_ij · coef[N + i]); rows [N]
// (may be null) the per-row losses; out[0] the reduced loss, out[1] the mean's divisor (1 for
// a sum). Returns 0, or 1 + the index of the first row whose target is out of range.
template <typename T>
int64_t forward(const T* z, const int64_t* y, int64_t n, int64_t c, const T* a, int divide, double s,
                const T* b, const T* d, const T* w, double gamma, double alpha, int64_t ignore, int mean_mode,
                T* p, T* coef, T* rows, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = y[i];
    if (t != ignore && (t < 0 || t >= c)) return i + 1;
  }
  affine(z, p, n, c, a, divide, static_cast<T>(s), b);
  // Per row: shift the target logit, subtract the row maximum; coef[i] holds u_t − m until
  // the exponentials are taken.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = y[i];
    T* ui = p + i * c;
    if (t == ignore) {
      for (int64_t j = 0; j < c; ++j) ui[j] = T(0);
      continue;
    }
    if (d) ui[t] = ui[t] + d[t];
    T m = ui[0];
    for (int64_t j = 1; j < c; ++j) m = ui[j] > m ? ui[j] : m;
    for (int64_t j = 0; j < c; ++j) ui[j] = ui[j] - m;
    coef[i] = ui[t];
  }
  exp_inplace(p, n * c);
  const T tiny = std::numeric_limits<T>::min();
  double total = 0.0, denom = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = y[i];
    T* pi = p + i * c;
    if (t == ignore) {
      coef[i] = coef[n + i] = T(0);
      if (rows) rows[i] = T(0);
      continue;
    }
    T rest = T(0);  // Σ_{j≠t} e^{u_j − m}: 1 − p_t without cancellation
    for (int64_t j = 0; j < c; ++j) rest += j == t ? T(0) : pi[j];
    const T et = pi[t];
    const T sum = rest + et;
    // −log p_t = log1p(rest / e_t) keeps its digits when p_t is near 1; when p_t < 1/2,
    // log(Σ) − (u_t − m) is as exact and survives e_t underflowing to 0.
    const T ce = et >= T(0.5) ? std::log1p(rest / et) : std::log(sum) - coef[i];
    const T inv = T(1) / sum;  // p_ij = e_ij · inv: kept per row, the backward applies it
    coef[n + i] = inv;
    T loss = ce, k = T(1);
    if (gamma != 0.0) {
      const T q = rest * inv, pt = et * inv;
      if (gamma < 1.0 && !(q >= tiny)) {  // (1 − p_t) clamped at tiny: no gradient through it
        loss = power(tiny, gamma) * ce;
        k = power(tiny, gamma);
        if (q != q) loss = k = q;
      } else {
        const T qg = power(q, gamma);
        const T qg1 = gamma == 1.0 ? T(1) : power(q, gamma - 1.0);
        loss = qg * ce;
        k = qg + static_cast<T>(gamma) * qg1 * pt * ce;
      }
    }
    const T wt = static_cast<T>(alpha) * (w ? w[t] : T(1));
    loss = loss * wt;
    coef[i] = k * wt;
    if (rows) rows[i] = loss;
    total += static_cast<double>(loss);
    denom += mean_mode == 1 ? static_cast<double>(w ? w[t] : T(1)) : 1.0;
  }
  if (mean_mode == 0) {
    denom = 1.0;
  } else if (mean_mode == 2 && denom < 1.0) {
    denom = 1.0;
  }
  out[0] = static_cast<T>(total / denom);  // mode 1 with no kept row: 0 / 0 = NaN, as in torch
  out[1] = static_cast<T>(denom);
  return 0;
}

// Backward: gz_ij = g_i · c_i / divisor · (p_ij − [j = y_i]) · ∂u_ij/∂z_ij, from the
// forward's p (the e_ij) and coef (c_i and 1 / Σ_j e_ij). g has stride
// gstride (0 for a scalar upstream gradient); divisor is out[1] of the forward.
template <typename T>
void backward(const T* p, const int64_t* y, int64_t n, int64_t c, const T* a, int divide, double s,
              const T* coef, const T* g, int64_t gstride, const T* divisor, T* gz) {
  const T inv = T(1) / divisor[0];
  for (int64_t i = 0; i < n; ++i) {
    const T* pi = p + i * c;
    T* gi = gz + i * c;
    const T k = coef[i] * g[i * gstride] * inv;
    if (coef[i] == T(0)) {
      for (int64_t j = 0; j < c; ++j) gi[j] = T(0);
      continue;
    }
    const T kp = k * coef[n + i];  // p_ij = e_ij / Σ_j e_ij
    for (int64_t j = 0; j < c; ++j) gi[j] = kp * pi[j];
    gi[y[i]] = gi[y[i]] - k;
  }
  if (a) {
    for (int64_t i = 0; i < n; ++i) {
      T* gi = gz + i * c;
      if (divide) {
        for (int64_t j = 0; j < c; ++j) gi[j] = gi[j] / a[j];
      } else {
        for (int64_t j = 0; j < c; ++j) gi[j] = gi[j] * a[j];
      }
    }
  }
  if (s != 1.0) {
    const T st = static_cast<T>(s);
    for (int64_t k = 0; k < n * c; ++k) gz[k] = gz[k] * st;
  }
}

}  // namespace

extern "C" {

#define LA_EXPORT(T, SUFFIX)                                                                                      \
  int64_t la_forward_##SUFFIX(const T* z, const int64_t* y, int64_t n, int64_t c, const T* a, int divide,        \
                              double s, const T* b, const T* d, const T* w, double gamma, double alpha,          \
                              int64_t ignore, int mean_mode, T* p, T* coef, T* rows, T* out) {                   \
    return forward<T>(z, y, n, c, a, divide, s, b, d, w, gamma, alpha, ignore, mean_mode, p, coef, rows, out);  \
  }                                                                                                              \
  void la_backward_##SUFFIX(const T* p, const int64_t* y, int64_t n, int64_t c, const T* a, int divide,          \
                            double s, const T* coef, const T* g, int64_t gstride, const T* divisor, T* gz) {     \
    backward<T>(p, y, n, c, a, divide, s, coef, g, gstride, divisor, gz);                                        \
  }                                                                                                              \
  void la_exp_##SUFFIX(T* x, int64_t n) { exp_inplace(x, n); }

LA_EXPORT(float, f32)
LA_EXPORT(double, f64)

}  // extern "C"
