"""Samplers: weight-free solvers that turn a trained denoiser into samples."""

from synthloom.samplers.edm import Denoiser, EDMHeunSampler, edm_loss, edm_sigma_schedule

__all__ = ["Denoiser", "EDMHeunSampler", "edm_loss", "edm_sigma_schedule"]
