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
// Work is split over the batch; sums over the batch (dA, dD, dw, dbias) use per-thread buffers.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

// _Pragma, not #pragma: some loops sit inside AT_DISPATCH macro arguments.
#define SIMD _Pragma("omp simd")
#define SIMD_REDUCE_BC _Pragma("omp simd reduction(+ : accB, accC)")

namespace {

constexpr int64_t DB = 32;  // channels per block


// Stride between rows r = b*L + t of a (B, L, C) view, which must have unit channel stride.
int64_t row_stride(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 3 && (x.stride(2) == 1 || x.size(2) == 1), name, ": need unit channel stride");
  if (x.size(0) == 1) return x.stride(1);
  if (x.size(1) == 1) return x.stride(0);
  TORCH_CHECK(x.stride(0) == x.size(1) * x.stride(1), name, ": need a uniform row stride");
  return x.stride(1);
}

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
Scan<T> make_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& At,
                  const torch::Tensor& Bm, const torch::Tensor& Cm, const torch::Tensor& Dv,
                  const torch::Tensor& z) {
  const bool has_z = z.numel() > 0;
  return Scan<T>{u.data_ptr<T>(), delta.data_ptr<T>(), At.data_ptr<T>(), Bm.data_ptr<T>(),
                 Cm.data_ptr<T>(), Dv.data_ptr<T>(), has_z ? z.data_ptr<T>() : nullptr,
                 u.size(1), u.size(2), At.size(0), row_stride(Bm, "B"), row_stride(Cm, "C"),
                 has_z ? row_stride(z, "z") : 0};
}

void check_scan(const torch::Tensor& u, const torch::Tensor& dp, const torch::Tensor& At,
                const torch::Tensor& Bm, const torch::Tensor& Cm, const torch::Tensor& Dv,
                const torch::Tensor& z) {
  TORCH_CHECK(u.dim() == 3 && u.is_contiguous() && dp.is_contiguous() && dp.sizes() == u.sizes(),
              "u and delta must be contiguous (B, L, D)");
  TORCH_CHECK(At.dim() == 2 && At.size(1) == u.size(2) && At.is_contiguous(), "At must be (N, D)");
  TORCH_CHECK(Bm.size(0) == u.size(0) && Bm.size(1) == u.size(1) && Bm.size(2) == At.size(0) &&
              Cm.sizes() == Bm.sizes(), "B and C must be (B, L, N)");
  TORCH_CHECK(Dv.dim() == 1 && Dv.size(0) == u.size(2) && Dv.is_contiguous(), "D must be (D,)");
  TORCH_CHECK(z.numel() == 0 || z.sizes() == u.sizes(), "z must be (B, L, D) or empty");
  for (const auto* x : {&dp, &At, &Bm, &Cm, &Dv, &z})
    TORCH_CHECK(x->numel() == 0 || (x->device().is_cpu() && x->scalar_type() == u.scalar_type()),
                "selective scan: CPU tensors of one dtype expected");
}

}  // namespace

// Returns (out, y): out = y * silu(z) (out is y when z is empty); y is kept for the backward.
std::vector<torch::Tensor> scan_fwd(torch::Tensor u, torch::Tensor dp, torch::Tensor At,
                                    torch::Tensor Bm, torch::Tensor Cm, torch::Tensor Dv,
                                    torch::Tensor z) {
  check_scan(u, dp, At, Bm, Cm, Dv, z);
  const int64_t Bt = u.size(0), L = u.size(1), Di = u.size(2), N = At.size(0);
  auto out = torch::empty_like(u);
  auto y = z.numel() > 0 ? torch::empty_like(u) : out;
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "scan_fwd", [&] {
    auto s = make_scan<scalar_t>(u, dp, At, Bm, Cm, Dv, z);
    scalar_t* ys = z.numel() > 0 ? y.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, Bt, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> buf(3 * N * DB + DB + 3 * L * DB);
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t d0 = 0; d0 < Di; d0 += DB) s.forward(b, d0, out.data_ptr<scalar_t>(), ys, buf);
    });
  });
    return {out, y};
}

// Returns (gu, gdp, gAt, gB, gC, gD); writes dL/dz into gz (same shape as z, any row stride).
std::vector<torch::Tensor> scan_bwd(torch::Tensor u, torch::Tensor dp, torch::Tensor At,
                                    torch::Tensor Bm, torch::Tensor Cm, torch::Tensor Dv,
                                    torch::Tensor z, torch::Tensor y,
                                    torch::Tensor gout, torch::Tensor gz) {
  check_scan(u, dp, At, Bm, Cm, Dv, z);
  gout = gout.contiguous();
  y = y.contiguous();
  TORCH_CHECK(gout.sizes() == u.sizes() && gout.scalar_type() == u.scalar_type(), "bad grad");
  TORCH_CHECK(z.numel() == 0 || gz.sizes() == z.sizes(), "gz must be shaped like z");
  const int64_t Bt = u.size(0), L = u.size(1), Di = u.size(2), N = At.size(0);
  auto gu = torch::empty_like(u);
  auto gdp = torch::empty_like(u);
  auto gB = torch::zeros({Bt, L, N}, u.options());
  auto gC = torch::zeros({Bt, L, N}, u.options());
  const int64_t nthreads = at::get_num_threads();
  auto gA_parts = torch::zeros({nthreads, N, Di}, u.options());
  auto gD_parts = torch::zeros({nthreads, Di + DB}, u.options());  // DB spare lanes
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "scan_bwd", [&] {
    auto s = make_scan<scalar_t>(u, dp, At, Bm, Cm, Dv, z);
    const int64_t sGZ = z.numel() > 0 ? row_stride(gz, "gz") : 0;
    scalar_t* gzp = z.numel() > 0 ? gz.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, Bt, 1, [&](int64_t b0, int64_t b1) {
      const int64_t tid = at::get_thread_num();
      std::vector<scalar_t> buf((2 * L + 4) * N * DB + 3 * L * DB + 3 * DB);
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t d0 = 0; d0 < Di; d0 += DB)
          s.backward(b, d0, gout.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                     gu.data_ptr<scalar_t>(), gdp.data_ptr<scalar_t>(), gB.data_ptr<scalar_t>(),
                     gC.data_ptr<scalar_t>(), gzp, sGZ,
                     gA_parts.data_ptr<scalar_t>() + tid * N * Di,
                     gD_parts.data_ptr<scalar_t>() + tid * (Di + DB) + d0, buf);
    });
  });
  return {gu, gdp, gA_parts.sum(0), gB, gC, gD_parts.sum(0).narrow(0, 0, Di).contiguous()};
}

// xc = silu(causal depthwise conv(x)); x (B, L, D) with any row stride, wT (K, D), bias (D).
torch::Tensor conv_silu_fwd(torch::Tensor x, torch::Tensor wT, torch::Tensor bias) {
  const int64_t sx = row_stride(x, "x");
  TORCH_CHECK(wT.dim() == 2 && wT.size(1) == x.size(2) && wT.is_contiguous() &&
              bias.sizes() == at::IntArrayRef{x.size(2)} && bias.is_contiguous(), "bad conv weights");
  const int64_t Bt = x.size(0), L = x.size(1), Di = x.size(2), K = wT.size(0);
  auto xc = torch::empty({Bt, L, Di}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_silu_fwd", [&] {
    const scalar_t *xp = x.data_ptr<scalar_t>(), *wp = wT.data_ptr<scalar_t>(),
                   *bp = bias.data_ptr<scalar_t>();
    scalar_t* op = xc.data_ptr<scalar_t>();
    at::parallel_for(0, Bt, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < L; ++t) {
          scalar_t* o = op + (b * L + t) * Di;
          for (int64_t d = 0; d < Di; ++d) o[d] = bp[d];
          for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
            const scalar_t* xs = xp + (b * L + t - (K - 1) + k) * sx;
            const scalar_t* wk = wp + k * Di;
SIMD
            for (int64_t d = 0; d < Di; ++d) o[d] += wk[d] * xs[d];
          }
SIMD
          for (int64_t d = 0; d < Di; ++d) o[d] = o[d] / (scalar_t(1) + std::exp(-o[d]));
        }
    });
  });
  return xc;
}

// Backward of conv_silu_fwd given dL/dxc: writes dL/dx into gx (any row stride), returns (gwT, gbias).
std::vector<torch::Tensor> conv_silu_bwd(torch::Tensor x, torch::Tensor wT, torch::Tensor bias,
                                         torch::Tensor gxc, torch::Tensor gx) {
  const int64_t sx = row_stride(x, "x"), sgx = row_stride(gx, "gx");
  gxc = gxc.contiguous();
  const int64_t Bt = x.size(0), L = x.size(1), Di = x.size(2), K = wT.size(0);
  const int64_t nthreads = at::get_num_threads();
  auto gw_parts = torch::zeros({nthreads, K + 1, Di}, x.options());  // row K: bias
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_silu_bwd", [&] {
    const scalar_t *xp = x.data_ptr<scalar_t>(), *wp = wT.data_ptr<scalar_t>(),
                   *bp = bias.data_ptr<scalar_t>(), *gp_in = gxc.data_ptr<scalar_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    at::parallel_for(0, Bt, 1, [&](int64_t b0, int64_t b1) {
      scalar_t* gw = gw_parts.data_ptr<scalar_t>() + at::get_thread_num() * (K + 1) * Di;
      std::vector<scalar_t> gpre(L * Di);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t t = 0; t < L; ++t) {  // dL/d(pre-activation)
          scalar_t* g = gpre.data() + t * Di;
          for (int64_t d = 0; d < Di; ++d) g[d] = bp[d];
          for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
            const scalar_t* xs = xp + (b * L + t - (K - 1) + k) * sx;
SIMD
            for (int64_t d = 0; d < Di; ++d) g[d] += wp[k * Di + d] * xs[d];
          }
          const scalar_t* go = gp_in + (b * L + t) * Di;
SIMD
          for (int64_t d = 0; d < Di; ++d) {
            const scalar_t p = g[d], s = scalar_t(1) / (scalar_t(1) + std::exp(-p));
            g[d] = go[d] * s * (scalar_t(1) + p * (scalar_t(1) - s));
            gw[K * Di + d] += g[d];
          }
          for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
            const scalar_t* xs = xp + (b * L + t - (K - 1) + k) * sx;
SIMD
            for (int64_t d = 0; d < Di; ++d) gw[k * Di + d] += g[d] * xs[d];
          }
        }
        for (int64_t s = 0; s < L; ++s) {  // x_s feeds outputs t = s + K - 1 - k
          scalar_t* o = gxp + (b * L + s) * sgx;
          for (int64_t d = 0; d < Di; ++d) o[d] = scalar_t(0);
          for (int64_t k = 0; k < K; ++k) {
            const int64_t t = s + K - 1 - k;
            if (t >= L) continue;
            const scalar_t* g = gpre.data() + t * Di;
SIMD
            for (int64_t d = 0; d < Di; ++d) o[d] += wp[k * Di + d] * g[d];
          }
        }
      }
    });
  });
  auto gw = gw_parts.sum(0);
  return {gw.narrow(0, 0, K).contiguous(), gw[K].contiguous()};
}
