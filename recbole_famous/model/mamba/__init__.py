"""Mamba block: mamba-ssm's fused kernels on CUDA, our selective scan everywhere else."""
from recbole_famous.model.mamba.block import MambaBlock
from recbole_famous.model.mamba.scan import selective_scan

__all__ = ["MambaBlock", "selective_scan"]
