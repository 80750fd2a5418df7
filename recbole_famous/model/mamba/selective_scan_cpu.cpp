// CPU kernels of the Mamba block (Gu & Dao, 2023, Alg. 2), forward and hand-written backward.
//
// 1. Selective scan with the D skip and the gate fused in. For every row (b, t), channel d and
//    state n:
//        h_t[d,n] = exp(delta_t[d] A[d,n]) h_{t-1}[d,n] + delta_t[d] B_t[n] u_t[d],   h_{-1} = 0
//        y_t[d]   = sum_n C_t[n] h_t[d,n] + D[d] u_t[d]
//        out_t[d] = y_t[d] * silu(z_t[d])            (or y_t[d] when there is no z)
//    (delta's softplus stays in PyTorch, vectorised there.)
//    Backward: the states are recomputed one (row, channel block) at a time, nothing of size
//    B*L*D*N is ever stored; then one reverse sweep with g_t = dL/dh_t (total):
//        g_t            = gy_t[d] C_t[n] + exp(delta_{t+1} A) g_{t+1}
//        dL/dC_t[n]     = sum_d gy_t[d] h_t[d,n]        dL/dB_t[n] = sum_d g_t delta_t u_t
//        dL/du_t[d]     = delta_t sum_n g_t B_t[n] + D gy_t
//        dL/ddelta_t[d] = u_t sum_n g_t B_t[n] + sum_n g_t h_{t-1} exp(delta_t A) A[d,n]
//        dL/dA[d,n]     = sum_{b,t} g_t h_{t-1} exp(delta_t A) delta_t
// 2. Causal depthwise convolution + silu: xc_t[d] = silu(bias[d] + sum_k w[k,d] x_{t-K+1+k}[d]).
//
// Layouts: (B, L, D)-like tensors are addressed by row r = b*L + t with a row stride (so B, C, z
// and x can be read in place from the projections' outputs) and unit stride over channels;
// A is passed transposed, At (N, D); conv weight as (K, D). Channels are processed in blocks of
// DB, zero-padded to a full block so that the inner loops have a fixed trip count and vectorise.
// Work is split over the batch in dynamic chunks of 4 rows (a thread that the OS parks on a busy
// machine does not hold the others up); sums over the batch (dA, dD, dw, dbias) use per-thread buffers.
// Plain C++ with OpenMP and no torch headers (compiles in seconds); cpu_kernels.py builds it and
// calls the extern "C" entry points at the end through ctypes, after checking every argument.
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#define SIMD _Pragma("omp simd")
#define SIMD_REDUCE_BC _Pragma("omp simd reduction(+ : accB, accC)")

namespace {

constexpr int64_t DB = 32;  // channels per block


template <typename T>
struct Scan {
  const T *u, *delta, *At, *Bm, *Cm, *Dv, *z;
  int64_t L, Di, N, sB, sC, sZ;

  // Per (row b, block d0), for all t: delta, u and delta*u, zero-padded to DB; A block as (N, DB).
  void prologue(int64_t b, int64_t d0, int64_t nd, T* Ab, T* DL, T* U, T* W) const {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < DB; ++d) Ab[n * DB + d] = d < nd ? At[n * Di + d0 + d] : T(0);
    std::fill(DL, DL + L * DB, T(0));
    std::fill(U, U + L * DB, T(0));
    for (int64_t t = 0; t < L; ++t) {
      const T* dl = delta + (b * L + t) * Di + d0;
      const T* uu = u + (b * L + t) * Di + d0;
      T *dlt = DL + t * DB, *ut = U + t * DB;
      SIMD
      for (int64_t d = 0; d < nd; ++d) { dlt[d] = dl[d]; ut[d] = uu[d]; }
    }
    SIMD
    for (int64_t i = 0; i < L * DB; ++i) W[i] = DL[i] * U[i];
  }

  static void exp_block(const T* __restrict__ Ab, const T* __restrict__ dl, T* __restrict__ E,
                        int64_t N) {
    for (int64_t n = 0; n < N; ++n) {
      SIMD
      for (int64_t d = 0; d < DB; ++d) E[n * DB + d] = std::exp(dl[d] * Ab[n * DB + d]);
    }
  }

  void forward(int64_t b, int64_t d0, T* out, T* ysave, std::vector<T>& buf) const {
    const int64_t nd = std::min(DB, Di - d0);
    T* Ab = buf.data();
    T* h = Ab + N * DB;
    T* E = h + N * DB;
    T *acc = E + N * DB, *DL = acc + DB, *U = DL + L * DB, *W = U + L * DB;
    prologue(b, d0, nd, Ab, DL, U, W);
    std::fill(h, h + N * DB, T(0));
    for (int64_t t = 0; t < L; ++t) {
      const int64_t r = b * L + t;
      const T *dl = DL + t * DB, *w = W + t * DB, *uu = U + t * DB;
      exp_block(Ab, dl, E, N);
      std::fill(acc, acc + DB, T(0));
      for (int64_t n = 0; n < N; ++n) {
        const T bn = Bm[r * sB + n], cn = Cm[r * sC + n];
        T* __restrict__ hn = h + n * DB;
        const T* __restrict__ en = E + n * DB;
        SIMD
        for (int64_t d = 0; d < DB; ++d) {
          const T hv = en[d] * hn[d] + w[d] * bn;
          hn[d] = hv;
          acc[d] += cn * hv;
        }
      }
      const T* Dd = Dv + d0;
      T* o = out + r * Di + d0;
      SIMD
      for (int64_t d = 0; d < nd; ++d) acc[d] += Dd[d] * uu[d];
      if (z) {
        const T* zz = z + r * sZ + d0;
        T* ys = ysave + r * Di + d0;
        SIMD
        for (int64_t d = 0; d < nd; ++d) {
          ys[d] = acc[d];
          o[d] = acc[d] * zz[d] / (T(1) + std::exp(-zz[d]));
        }
      } else {
        SIMD
        for (int64_t d = 0; d < nd; ++d) o[d] = acc[d];
      }
    }
  }

  // Gradients for row b, block d0, given dL/dout; ysave: y before the gate (used with z).
  void backward(int64_t b, int64_t d0, const T* gout, const T* ysave, T* gu, T* gdelta, T* gB,
                T* gC, T* gz, int64_t sGZ, T* gAt, T* gD, std::vector<T>& buf) const {
    const int64_t nd = std::min(DB, Di - d0);
    const int64_t S = N * DB;
    T* Ab = buf.data();
    T* H = Ab + S;            // (L + 1) * S, H[0] = 0
    T* E = H + (L + 1) * S;   // L * S
    T* G = E + L * S;         // S
    T* gA = G + S;            // S
    T *DL = gA + S, *U = DL + L * DB, *W = U + L * DB, *gy = W + L * DB, *s1 = gy + DB,
      *s2 = s1 + DB;
    prologue(b, d0, nd, Ab, DL, U, W);
    std::fill(H, H + S, T(0));
    for (int64_t t = 0; t < L; ++t) {
      const int64_t r = b * L + t;
      const T* w = W + t * DB;
      T* Et = E + t * S;
      exp_block(Ab, DL + t * DB, Et, N);
      for (int64_t n = 0; n < N; ++n) {
        const T bn = Bm[r * sB + n];
        const T* __restrict__ hp = H + t * S + n * DB;
        T* __restrict__ hc = H + (t + 1) * S + n * DB;
        const T* __restrict__ en = Et + n * DB;
        SIMD
        for (int64_t d = 0; d < DB; ++d) hc[d] = en[d] * hp[d] + w[d] * bn;
      }
    }
    std::fill(G, G + 2 * S, T(0));  // G and gA
    std::fill(gy, gy + DB, T(0));   // lanes d >= nd stay zero
    for (int64_t t = L - 1; t >= 0; --t) {
      const int64_t r = b * L + t;
      const T *dl = DL + t * DB, *uu = U + t * DB, *w = W + t * DB;
      const T* go = gout + r * Di + d0;
      if (z) {
        const T* zz = z + r * sZ + d0;
        const T* ys = ysave + r * Di + d0;
        T* gzz = gz + r * sGZ + d0;
        SIMD
        for (int64_t d = 0; d < nd; ++d) {
          const T sg = T(1) / (T(1) + std::exp(-zz[d]));
          gy[d] = go[d] * zz[d] * sg;
          gzz[d] = go[d] * ys[d] * sg * (T(1) + zz[d] * (T(1) - sg));
        }
      } else {
        SIMD
        for (int64_t d = 0; d < nd; ++d) gy[d] = go[d];
      }
      SIMD
      for (int64_t d = 0; d < DB; ++d) { gD[d] += gy[d] * uu[d]; s1[d] = T(0); s2[d] = T(0); }
      for (int64_t n = 0; n < N; ++n) {
        const T bn = Bm[r * sB + n], cn = Cm[r * sC + n];
        const T* __restrict__ An = Ab + n * DB;
        const T* __restrict__ hp = H + t * S + n * DB;
        const T* __restrict__ hc = H + (t + 1) * S + n * DB;
        const T* __restrict__ en = E + t * S + n * DB;
        T* __restrict__ Gn = G + n * DB;
        T* __restrict__ gAn = gA + n * DB;
        T accB = T(0), accC = T(0);
        SIMD_REDUCE_BC
        for (int64_t d = 0; d < DB; ++d) {
          const T g = Gn[d] + gy[d] * cn;
          accC += gy[d] * hc[d];
          accB += g * w[d];
          const T q = g * hp[d] * en[d];
          s1[d] += q * An[d];
          gAn[d] += q * dl[d];
          s2[d] += g * bn;
          Gn[d] = g * en[d];
        }
        gB[r * N + n] += accB;
        gC[r * N + n] += accC;
      }
      const T* Dd = Dv + d0;
      T *gdd = gdelta + r * Di + d0, *guu = gu + r * Di + d0;
      SIMD
      for (int64_t d = 0; d < nd; ++d) {
        gdd[d] = s1[d] + uu[d] * s2[d];
        guu[d] = dl[d] * s2[d] + gy[d] * Dd[d];
      }
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < nd; ++d) gAt[n * Di + d0 + d] += gA[n * DB + d];
  }
};

template <typename T>
void conv_silu_fwd(const T* xp, int64_t sx, const T* wp, const T* bp, T* op, int64_t Bt, int64_t L,
                   int64_t Di, int64_t K, int nthreads) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
  for (int64_t b = 0; b < Bt; ++b)
    for (int64_t t = 0; t < L; ++t) {
      T* o = op + (b * L + t) * Di;
      for (int64_t d = 0; d < Di; ++d) o[d] = bp[d];
      for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
        const T* xs = xp + (b * L + t - (K - 1) + k) * sx;
        const T* wk = wp + k * Di;
        SIMD
        for (int64_t d = 0; d < Di; ++d) o[d] += wk[d] * xs[d];
      }
      SIMD
      for (int64_t d = 0; d < Di; ++d) o[d] = o[d] / (T(1) + std::exp(-o[d]));
    }
}

// gw_parts: (nthreads, K + 1, Di) zeros, row K for the bias; the caller sums over threads.
template <typename T>
void conv_silu_bwd(const T* xp, int64_t sx, const T* wp, const T* bp, const T* gp_in, T* gxp,
                   int64_t sgx, T* gw_parts, int64_t Bt, int64_t L, int64_t Di, int64_t K,
                   int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    T* gw = gw_parts + omp_get_thread_num() * (K + 1) * Di;
    std::vector<T> gpre(L * Di);
#pragma omp for schedule(dynamic, 4)
    for (int64_t b = 0; b < Bt; ++b) {
      for (int64_t t = 0; t < L; ++t) {  // dL/d(pre-activation)
        T* g = gpre.data() + t * Di;
        for (int64_t d = 0; d < Di; ++d) g[d] = bp[d];
        for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
          const T* xs = xp + (b * L + t - (K - 1) + k) * sx;
          SIMD
          for (int64_t d = 0; d < Di; ++d) g[d] += wp[k * Di + d] * xs[d];
        }
        const T* go = gp_in + (b * L + t) * Di;
        SIMD
        for (int64_t d = 0; d < Di; ++d) {
          const T p = g[d], sg = T(1) / (T(1) + std::exp(-p));
          g[d] = go[d] * sg * (T(1) + p * (T(1) - sg));
          gw[K * Di + d] += g[d];
        }
        for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
          const T* xs = xp + (b * L + t - (K - 1) + k) * sx;
          SIMD
          for (int64_t d = 0; d < Di; ++d) gw[k * Di + d] += g[d] * xs[d];
        }
      }
      for (int64_t s = 0; s < L; ++s) {  // x_s feeds outputs t = s + K - 1 - k
        T* o = gxp + (b * L + s) * sgx;
        for (int64_t d = 0; d < Di; ++d) o[d] = T(0);
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = s + K - 1 - k;
          if (t >= L) continue;
          const T* g = gpre.data() + t * Di;
          SIMD
          for (int64_t d = 0; d < Di; ++d) o[d] += wp[k * Di + d] * g[d];
        }
      }
    }
  }
}

template <typename T>
void scan_fwd(const T* u, const T* delta, const T* At, const T* Bm, const T* Cm, const T* Dv,
              const T* z, T* out, T* ysave, int64_t Bt, int64_t L, int64_t Di, int64_t N,
              int64_t sB, int64_t sC, int64_t sZ, int nthreads) {
  const Scan<T> s{u, delta, At, Bm, Cm, Dv, z, L, Di, N, sB, sC, sZ};
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> buf(3 * N * DB + DB + 3 * L * DB);
#pragma omp for schedule(dynamic, 4)
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t d0 = 0; d0 < Di; d0 += DB) s.forward(b, d0, out, ysave, buf);
  }
}

// gB, gC: zeros; gA_parts (nthreads, N, Di) and gD_parts (nthreads, Di + DB) zeros, summed by
// the caller over threads.
template <typename T>
void scan_bwd(const T* u, const T* delta, const T* At, const T* Bm, const T* Cm, const T* Dv,
              const T* z, const T* y, const T* gout, T* gu, T* gdelta, T* gB, T* gC, T* gz,
              int64_t sGZ, T* gA_parts, T* gD_parts, int64_t Bt, int64_t L, int64_t Di, int64_t N,
              int64_t sB, int64_t sC, int64_t sZ, int nthreads) {
  const Scan<T> s{u, delta, At, Bm, Cm, Dv, z, L, Di, N, sB, sC, sZ};
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    std::vector<T> buf((2 * L + 4) * N * DB + 3 * L * DB + 3 * DB);
#pragma omp for schedule(dynamic, 4)
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t d0 = 0; d0 < Di; d0 += DB)
        s.backward(b, d0, gout, y, gu, gdelta, gB, gC, gz, sGZ, gA_parts + tid * N * Di,
                   gD_parts + tid * (Di + DB) + d0, buf);
  }
}

}  // namespace

// C entry points, one per dtype (f: float32, d: float64), called through ctypes.
#define ENTRY_POINTS(T, SUF)                                                                      \
  extern "C" void scan_fwd_##SUF(const T* u, const T* delta, const T* At, const T* Bm,         \
                                 const T* Cm, const T* Dv, const T* z, T* out, T* ysave,       \
                                 int64_t Bt, int64_t L, int64_t Di, int64_t N, int64_t sB,     \
                                 int64_t sC, int64_t sZ, int nthreads) {                       \
    scan_fwd<T>(u, delta, At, Bm, Cm, Dv, z, out, ysave, Bt, L, Di, N, sB, sC, sZ, nthreads);  \
  }                                                                                             \
  extern "C" void scan_bwd_##SUF(const T* u, const T* delta, const T* At, const T* Bm,         \
                                 const T* Cm, const T* Dv, const T* z, const T* y,             \
                                 const T* gout, T* gu, T* gdelta, T* gB, T* gC, T* gz,         \
                                 int64_t sGZ, T* gA_parts, T* gD_parts, int64_t Bt, int64_t L, \
                                 int64_t Di, int64_t N, int64_t sB, int64_t sC, int64_t sZ,    \
                                 int nthreads) {                                               \
    scan_bwd<T>(u, delta, At, Bm, Cm, Dv, z, y, gout, gu, gdelta, gB, gC, gz, sGZ, gA_parts,   \
                gD_parts, Bt, L, Di, N, sB, sC, sZ, nthreads);                                 \
  }                                                                                             \
  extern "C" void conv_silu_fwd_##SUF(const T* x, int64_t sx, const T* wT, const T* bias,      \
                                      T* out, int64_t Bt, int64_t L, int64_t Di, int64_t K,    \
                                      int nthreads) {                                          \
    conv_silu_fwd<T>(x, sx, wT, bias, out, Bt, L, Di, K, nthreads);                            \
  }                                                                                             \
  extern "C" void conv_silu_bwd_##SUF(const T* x, int64_t sx, const T* wT, const T* bias,      \
                                      const T* gxc, T* gx, int64_t sgx, T* gw_parts,           \
                                      int64_t Bt, int64_t L, int64_t Di, int64_t K,            \
                                      int nthreads) {                                          \
    conv_silu_bwd<T>(x, sx, wT, bias, gxc, gx, sgx, gw_parts, Bt, L, Di, K, nthreads);         \
  }

ENTRY_POINTS(float, f)
ENTRY_POINTS(double, d)

extern "C" int64_t scan_block_size() { return DB; }
