"""Shared conditional-diffusion code: the CSDI-style denoiser (genes as tokens) and the noise
schedule with DDPM/DDIM samplers. Used by stMCDI (methods/stmcdi) and CSDI (methods/csdi): it
lives in the ``stbench`` package because the sandbox copies only a method's own folder plus
``stbench`` into the method's process (stbench/run/sandbox.py)."""

from stbench.kit.diffusion.denoiser import DiffusionEmbedding, Denoiser, GeneAttention, ResidualBlock, sinusoidal_table
from stbench.kit.diffusion.schedule import Schedule, ddim_sample, ddim_timesteps, ddpm_sample

__all__ = ["DiffusionEmbedding", "Denoiser", "GeneAttention", "ResidualBlock", "sinusoidal_table", "Schedule",
           "ddim_sample", "ddim_timesteps", "ddpm_sample"]
