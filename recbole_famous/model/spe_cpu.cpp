// L_spe's elementwise work (Eqs. 11-13, recbole_famous/model/losses.py) fused over the items, for a block
// of c users: two passes over the logits in the forward, one in the backward, instead of about twenty
// PyTorch operators. The logits themselves (and the gradients' matrix products) stay torch matmuls.
//
//   S (c, K, n): logits of own = M_k(x_k) . v_i;  Tl (c, M, K, n): logits of others = M_k(x_{j_m}) . v_i
//   lp_k = S_k - lse(S_k), p_k = exp(lp_k), lq_mk = Tl_mk - lse(Tl_mk), q_mk = exp(lq_mk)
//   L = sum_k lp_k, P = sum_k p_k, R_k = sum_m lq_mk            (per item i)
//   numer = K sum_k sum_i p_k (lp_k - L / K)                     (sum_{k,k'} KL(p_k || p_k'))
//   denom = sum_k sum_i p_k (M lp_k - R_k)                       (sum_{m,k} KL(p_k || q_mk))
//   ne_k = sum_i p_k lp_k, pl_k = sum_i p_k L, pr_k = sum_i p_k R_k   (kept for the backward)
// Backward, with gn, gd the gradients of numer and denom, a = gn K + gd M, b_k = gn K + gn pl_k + gd pr_k - a ne_k:
//   dS_k  = p_k (a lp_k + b_k - gn L - gd R_k) - gn P
//   dTl_mk = gd (q_mk - p_k)
// (the same formulas as losses._SpeSums.backward, which is the reference). Per-item work runs in tiles of
// TILE items so that every inner loop is a plain vectorisable loop over the tile; sums are accumulated per
// tile in T and across tiles in double. Users are independent: one OpenMP task per user.
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t TILE = 256;

template <typename T>
void row_lse(const T* __restrict__ x, int64_t n, T* out) {
  T mx = x[0];  // not -inf: -ffast-math assumes finite values
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  *out = mx + std::log(s);
}

// One user's tile: lp (K x w), p (K x w), L (w), R (K x w) from the logits at items [i0, i0 + w).
template <typename T>
void tile_values(const T* S, const T* Tl, const T* lse_s, const T* lse_t, int64_t K, int64_t M, int64_t n,
                 int64_t i0, int64_t w, T* lp, T* p, T* L, T* R) {
  for (int64_t t = 0; t < w; ++t) L[t] = 0;
  for (int64_t k = 0; k < K; ++k) {
    const T* s = S + k * n + i0;
    T* lpk = lp + k * TILE;
    T* pk = p + k * TILE;
    const T ls = lse_s[k];
    for (int64_t t = 0; t < w; ++t) {
      lpk[t] = s[t] - ls;
      pk[t] = std::exp(lpk[t]);
      L[t] += lpk[t];
    }
    T* rk = R + k * TILE;
    for (int64_t t = 0; t < w; ++t) rk[t] = 0;
    for (int64_t m = 0; m < M; ++m) {
      const T* q = Tl + (m * K + k) * n + i0;
      const T lt = lse_t[m * K + k];
      for (int64_t t = 0; t < w; ++t) rk[t] += q[t] - lt;
    }
  }
}

template <typename T>
void fwd_user(const T* S, const T* Tl, int64_t K, int64_t M, int64_t n, T* lse_s, T* lse_t, double* sums,
              double* stats) {
  for (int64_t k = 0; k < K; ++k) row_lse(S + k * n, n, lse_s + k);
  for (int64_t r = 0; r < M * K; ++r) row_lse(Tl + r * n, n, lse_t + r);
  std::vector<T> buf(TILE * (3 * K + 1));
  T *lp = buf.data(), *p = lp + K * TILE, *R = p + K * TILE, *L = R + K * TILE;
  double numer = 0, denom = 0;
  std::vector<double> ne(K, 0.0), pl(K, 0.0), pr(K, 0.0);
  const T invK = T(1) / T(K), Mf = T(M);
  for (int64_t i0 = 0; i0 < n; i0 += TILE) {
    const int64_t w = std::min(TILE, n - i0);
    tile_values(S, Tl, lse_s, lse_t, K, M, n, i0, w, lp, p, L, R);
    for (int64_t k = 0; k < K; ++k) {
      const T *lpk = lp + k * TILE, *pk = p + k * TILE, *rk = R + k * TILE;
      T a_num = 0, a_den = 0, a_ne = 0, a_pl = 0, a_pr = 0;
      for (int64_t t = 0; t < w; ++t) {
        const T pv = pk[t], lv = lpk[t];
        a_ne += pv * lv;
        a_pl += pv * L[t];
        a_pr += pv * rk[t];
        a_num += pv * (lv - L[t] * invK);
        a_den += pv * (Mf * lv - rk[t]);
      }
      numer += a_num;
      denom += a_den;
      ne[k] += a_ne;
      pl[k] += a_pl;
      pr[k] += a_pr;
    }
  }
  sums[0] = double(K) * numer;
  sums[1] = denom;
  for (int64_t k = 0; k < K; ++k) {
    stats[3 * k] = ne[k];
    stats[3 * k + 1] = pl[k];
    stats[3 * k + 2] = pr[k];
  }
}

template <typename T>
void bwd_user(const T* S, const T* Tl, const T* lse_s, const T* lse_t, const double* stats, double gn, double gd,
              int64_t K, int64_t M, int64_t n, T* gS, T* gT) {
  std::vector<T> buf(TILE * (3 * K + 2));
  T *lp = buf.data(), *p = lp + K * TILE, *R = p + K * TILE, *L = R + K * TILE, *P = L + TILE;
  const T a = T(gn * double(K) + gd * double(M)), gnT = T(gn), gdT = T(gd);
  std::vector<T> b(K);
  for (int64_t k = 0; k < K; ++k)
    b[k] = T(gn * double(K) + gn * stats[3 * k + 1] + gd * stats[3 * k + 2] - (gn * double(K) + gd * double(M)) * stats[3 * k]);
  for (int64_t i0 = 0; i0 < n; i0 += TILE) {
    const int64_t w = std::min(TILE, n - i0);
    tile_values(S, Tl, lse_s, lse_t, K, M, n, i0, w, lp, p, L, R);
    for (int64_t t = 0; t < w; ++t) P[t] = 0;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < w; ++t) P[t] += p[k * TILE + t];
    for (int64_t k = 0; k < K; ++k) {
      const T *lpk = lp + k * TILE, *pk = p + k * TILE, *rk = R + k * TILE;
      T* g = gS + k * n + i0;
      const T bk = b[k];
      for (int64_t t = 0; t < w; ++t) g[t] = pk[t] * (a * lpk[t] + bk - gnT * L[t] - gdT * rk[t]) - gnT * P[t];
      for (int64_t m = 0; m < M; ++m) {
        const T* q = Tl + (m * K + k) * n + i0;
        T* gq = gT + (m * K + k) * n + i0;
        const T lt = lse_t[m * K + k];
        for (int64_t t = 0; t < w; ++t) gq[t] = gdT * (std::exp(q[t] - lt) - pk[t]);
      }
    }
  }
}

template <typename T>
void spe_fwd(const T* S, const T* Tl, int64_t c, int64_t K, int64_t M, int64_t n, T* lse_s, T* lse_t,
             double* sums, double* stats, int nthreads) {
  std::vector<double> per(2 * c);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t u = 0; u < c; ++u)
    fwd_user(S + u * K * n, Tl + u * M * K * n, K, M, n, lse_s + u * K, lse_t + u * M * K, per.data() + 2 * u,
             stats + u * 3 * K);
  double numer = 0, denom = 0;
  for (int64_t u = 0; u < c; ++u) {
    numer += per[2 * u];
    denom += per[2 * u + 1];
  }
  sums[0] = numer;
  sums[1] = denom;
}

template <typename T>
void spe_bwd(const T* S, const T* Tl, const T* lse_s, const T* lse_t, const double* stats, double gn, double gd,
             int64_t c, int64_t K, int64_t M, int64_t n, T* gS, T* gT, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t u = 0; u < c; ++u)
    bwd_user(S + u * K * n, Tl + u * M * K * n, lse_s + u * K, lse_t + u * M * K, stats + u * 3 * K, gn, gd, K, M,
             n, gS + u * K * n, gT + u * M * K * n);
}

}  // namespace

#define SPE_ENTRY_POINTS(T, SUF)                                                                          \
  extern "C" void spe_fwd_##SUF(const T* S, const T* Tl, int64_t c, int64_t K, int64_t M, int64_t n,      \
                                T* lse_s, T* lse_t, double* sums, double* stats, int nthreads) {          \
    spe_fwd<T>(S, Tl, c, K, M, n, lse_s, lse_t, sums, stats, nthreads);                                   \
  }                                                                                                       \
  extern "C" void spe_bwd_##SUF(const T* S, const T* Tl, const T* lse_s, const T* lse_t,                  \
                                const double* stats, double gn, double gd, int64_t c, int64_t K,          \
                                int64_t M, int64_t n, T* gS, T* gT, int nthreads) {                       \
    spe_bwd<T>(S, Tl, lse_s, lse_t, stats, gn, gd, c, K, M, n, gS, gT, nthreads);                         \
  }

SPE_ENTRY_POINTS(float, f)
SPE_ENTRY_POINTS(double, d)
