"""The Mamba block between ``in_proj`` and ``out_proj`` as one autograd function on the CPU: the
counterpart of mamba-ssm's ``mamba_inner_fn`` (which fuses the same steps on CUDA).

    x, z   = xz[..., :D], xz[..., D:]
    xc     = silu(causal depthwise conv(x))                  C++ kernel
    xdbl   = xc @ x_proj^T ;  dt, B, C = split(xdbl)         matmul
    dp     = dt @ dt_proj^T + dt_bias                        matmul
    out    = (scan(xc, softplus(dp), A, B, C) + D xc) * silu(z)   C++ kernel (softplus: torch)

The backward is written by hand: the scan kernel writes dL/dz straight into the gradient of
``xz`` and the convolution's backward writes dL/dx into its other half, so no gradient of the
size of ``xz`` is ever concatenated, and B, C and z are read in place (no copies).
"""
import torch
import torch.nn.functional as F

from recbole_famous.model.mamba import scan as _scan


class MambaInnerCpu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A, D):
        ctx.dtypes = [t.dtype for t in (xz, conv_w, conv_w, x_proj_w, dt_proj_w, dt_proj_b, A, D)]
        ext = _scan.load_extension()
        dt = _scan.kernel_dtype(xz)
        Bt, L, two_d = xz.shape
        Di, N, R = two_d // 2, A.shape[1], dt_proj_w.shape[1]
        xz = xz.to(dt).contiguous()
        wT = conv_w.to(dt).reshape(Di, -1).t().contiguous()
        bias = torch.zeros(Di, dtype=dt) if conv_b is None else conv_b.to(dt).contiguous()
        x_proj_w, dt_proj_w = x_proj_w.to(dt), dt_proj_w.to(dt)
        xc = ext.conv_silu_fwd(xz[..., :Di], wT, bias)
        xdbl = (xc.view(-1, Di) @ x_proj_w.t()).view(Bt, L, -1)
        dp = torch.addmm(dt_proj_b.to(dt), xdbl.view(-1, xdbl.shape[-1])[:, :R],
                         dt_proj_w.t()).view(Bt, L, Di)
        At, Dv = A.t().to(dt).contiguous(), D.to(dt).contiguous()
        Bm, Cm, z = xdbl[..., R:R + N], xdbl[..., R + N:], xz[..., Di:]
        out, y = ext.scan_fwd(xc, F.softplus(dp), At, Bm, Cm, Dv, z)
        ctx.save_for_backward(xz, wT, bias, x_proj_w, dt_proj_w, At, Dv, xc, xdbl, dp, y)
        ctx.has_conv_b = conv_b is not None
        return out.to(ctx.dtypes[0])

    @staticmethod
    def backward(ctx, gout):
        ext = _scan.load_extension()
        xz, wT, bias, x_proj_w, dt_proj_w, At, Dv, xc, xdbl, dp, y = ctx.saved_tensors
        Bt, L, Di = xc.shape
        N, R = At.shape[0], dt_proj_w.shape[1]
        gxz = torch.empty_like(xz)
        Bm, Cm, z = xdbl[..., R:R + N], xdbl[..., R + N:], xz[..., Di:]
        gxc, gdelta, gAt, gB, gC, gD = ext.scan_bwd(xc, F.softplus(dp), At, Bm, Cm, Dv, z, y,
                                                   gout.to(xc.dtype), gxz[..., Di:])
        gdp2 = gdelta.mul_(torch.sigmoid(dp)).view(-1, Di)
        dt_low = xdbl.view(-1, xdbl.shape[-1])[:, :R]
        gxdbl = torch.cat([gdp2 @ dt_proj_w, gB.view(-1, N), gC.view(-1, N)], dim=1)
        g_dt_w = gdp2.t() @ dt_low
        g_dt_b = gdp2.sum(0)
        g_x_proj_w = gxdbl.t() @ xc.view(-1, Di)
        gxc = gxc.view(-1, Di).addmm_(gxdbl, x_proj_w).view(Bt, L, Di)
        gwT, gbias = ext.conv_silu_bwd(xz[..., :Di], wT, bias, gxc, gxz[..., :Di])
        g_conv_w = gwT.t().reshape(Di, 1, -1)
        grads = [gxz, g_conv_w, gbias if ctx.has_conv_b else None, g_x_proj_w, g_dt_w, g_dt_b,
                 gAt.t(), gD]
        return tuple(None if g is None else g.to(t) for g, t in zip(grads, ctx.dtypes))


def mamba_inner_cpu(xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A, D):
    """(B, L, 2*d_inner) -> (B, L, d_inner): the gated scan output, before ``out_proj``."""
    return MambaInnerCpu.apply(xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A, D)
