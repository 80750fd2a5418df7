"""One Mamba block (Gu & Dao, 2023, Fig. 3) with exactly the parameters of ``mamba_ssm.Mamba``.

    x, z   = in_proj(h)                                   (B, L, 2 * d_inner)
    x      = silu(causal depthwise conv1d(x))             kernel d_conv, left padding d_conv - 1
    dt,B,C = x_proj(x)                                    dt_rank, d_state, d_state
    delta  = softplus(dt_proj(dt))                        (B, L, d_inner), dt_proj has the bias
    y      = selective_scan(x, delta, A = -exp(A_log), B, C) + D * x
    out    = out_proj(y * silu(z))

Parameter names, shapes and initialisation are mamba-ssm's (``mamba_simple.Mamba``), so a state
dict moves between the two unchanged: in_proj (2*d_inner, d_model), conv1d (d_inner, 1, d_conv)
+ bias, x_proj (dt_rank + 2*d_state, d_inner), dt_proj (d_inner, dt_rank) + bias initialised to
softplus^-1 of a log-uniform dt in [dt_min, dt_max], A_log (d_inner, d_state) = log(1..d_state),
D (d_inner) = 1, out_proj (d_model, d_inner). Causal: output t depends on inputs <= t only.

Backends (``scan.choose_backend``): on CUDA with mamba-ssm importable, its fused kernels (``mamba_inner_fn``
when causal-conv1d is installed, else torch's conv and ``selective_scan_fn``); on the CPU our fused C++ kernels
(``inner_cpu.py``); on CUDA without mamba-ssm, standard modules and our Triton scan (``scan_triton.py``); where
none of those can run, standard modules and the plain PyTorch scan. ``RECBOLE_FAMOUS_MAMBA_SCAN`` forces one.
The path taken is logged once at INFO.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_famous.model.mamba.inner_cpu import mamba_inner_cpu
from recbole_famous.model.mamba.scan import choose_backend, log_once, mamba_ssm_kernels, selective_scan


class MambaBlock(nn.Module):
    """``(B, L, d_model) -> (B, L, d_model)``; the signature is mamba_ssm.Mamba's."""

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001,
                 dt_max=0.1, dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True,
                 bias=False, use_fast_path=True, layer_idx=None, device=None, dtype=None):
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ValueError(f"MambaBlock: dt_init must be 'random' or 'constant', got {dt_init!r}")
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand <= 0:
            raise ValueError("MambaBlock: d_model, d_state, d_conv and expand must be positive")
        kw = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **kw)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **kw)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **kw)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **kw)
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                nn.init.constant_(self.dt_proj.weight, std)
            else:
                nn.init.uniform_(self.dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner, **kw) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **kw)

    def forward(self, hidden_states):
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"MambaBlock: expected input (batch, length, {self.d_model}), "
                             f"got {tuple(hidden_states.shape)}")
        backend = choose_backend(hidden_states.device.type)
        if backend == "mamba_ssm":
            return self._forward_mamba_ssm(hidden_states, *mamba_ssm_kernels())
        return self._forward_ours(hidden_states, backend)

    def _forward_ours(self, hidden, backend):
        xz = self.in_proj(hidden)
        A = -torch.exp(self.A_log if self.A_log.dtype == torch.float64 else self.A_log.float())
        if backend == "cpp":
            log_once("cpp", "Mamba: selective scan runs in our C++ CPU kernel on cpu")
            y = mamba_inner_cpu(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                                self.dt_proj.weight, self.dt_proj.bias, A, self.D)
            return self.out_proj(y)
        return self.out_proj(self._inner_composite(xz, A, backend=backend))

    def _inner_composite(self, xz, A, backend=None):
        """The same maths as ``mamba_inner_cpu`` from standard modules and ``selective_scan``."""
        L = xz.shape[1]
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2))
        dt, Bm, Cm = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return selective_scan(x, self.dt_proj(dt), A, Bm, Cm, D=self.D, z=z, delta_softplus=True,
                              backend=backend)

    def _forward_mamba_ssm(self, hidden, selective_scan_fn, mamba_inner_fn):
        """mamba_simple.Mamba.forward without inference cache; layout (B, D, L) as its kernels want."""
        L = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)
        A = -torch.exp(self.A_log.float())
        if self.use_fast_path and mamba_inner_fn is not None:
            log_once("mamba_inner_fn", "Mamba: running mamba-ssm's fused mamba_inner_fn on CUDA")
            return mamba_inner_fn(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                                  self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias,
                                  A, None, None, self.D.float(), delta_bias=self.dt_proj.bias.float(),
                                  delta_softplus=True)
        log_once("selective_scan_fn", "Mamba: running mamba-ssm's selective_scan_fn on CUDA")
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :L])
        dt, Bm, Cm = self.x_proj(x.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        y = selective_scan_fn(x, delta, A, Bm.transpose(1, 2).contiguous(),
                              Cm.transpose(1, 2).contiguous(), self.D.float(), z=z,
                              delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))
