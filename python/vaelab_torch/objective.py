# The VAE objective as vaelab computes it (core/objective.cpp, core/train_step.cpp), in nats: the
# likelihoods, the analytic KL, the clustering VAE's prior terms, L reparameterised samples.
# Autograd gives the gradients. Not an optimiser or a training loop (train_ddp.py is one).
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


class ElboTerms(NamedTuple):
    """Per example b and sample l, both (B, L): log p(x_b | z_bl) and the KL part. For the MLP
    and conv families the KL is analytic (the same in every column); for the clustering VAE it is
    Σ_y p(y|z_bl) KL(q(z|x_b) ‖ N(μ_y, σ_y²)) + KL(p(y|z_bl) ‖ uniform(K))."""
    recon: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self):
        return self.recon - self.kl


def log_likelihood(likelihood, x, out, decoder_logvar):
    """log p(x | ·) summed over pixels: x (…, D) in [0, 1], out the decoder's raw output (…, D)."""
    if likelihood == "bernoulli":
        # x·l − softplus(l), written as vaelab does: max(l, 0) + log1p(e^−|l|).
        return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
    D = out.shape[-1]
    sq = (out - x).square().sum(-1)
    return -0.5 * torch.exp(-decoder_logvar) * sq - 0.5 * (decoder_logvar + LOG_2PI) * D


def kl_standard_normal(mu, logvar):
    """KL(N(μ, σ²) ‖ N(0, I)) summed over dimensions: (B, d) → (B)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(-1)


def clustering_prior_terms(model, mu, logvar, z):
    """mu, logvar (B, d), z (B, L, d) → (B, L): vaelab's gmvae_prior_terms."""
    K = model.config.clusters
    cm = model.cluster_means                  # (K, d)
    cl = model.cluster_logvars_clamped()      # (K, d)
    diff = cm.unsqueeze(0) - mu.unsqueeze(1)  # (B, K, d)
    cdim = 0.5 * ((cl.unsqueeze(0) - logvar.unsqueeze(1))
                  + (diff.square() + logvar.exp().unsqueeze(1)) * torch.exp(-cl).unsqueeze(0) - 1.0)
    C = cdim.sum(-1)                          # (B, K)
    p = torch.softmax(model.classify_logits(z), dim=-1)  # (B, L, K)
    return (p * C.unsqueeze(1)).sum(-1) + (p * torch.log((p * K).clamp_min(1e-30))).sum(-1)


def elbo_terms(model, x, eps):
    """x: (B, D) in [0, 1]; eps: (B, L, d) standard normal noise → ElboTerms (B, L) each, with
    z_bl = μ_b + σ_b ε_bl."""
    mu, logvar = model.encode(x)
    sigma = torch.exp(0.5 * logvar)
    z = mu.unsqueeze(1) + sigma.unsqueeze(1) * eps  # (B, L, d)
    B, L, d = z.shape
    out = model.decode(z.reshape(B * L, d)).reshape(B, L, -1)
    recon = log_likelihood(model.config.likelihood, x.unsqueeze(1), out, model.decoder_log_variance())
    if model.config.family == "gmvae":
        kl = clustering_prior_terms(model, mu, logvar, z)
    else:
        kl = kl_standard_normal(mu, logvar).unsqueeze(1).expand(B, L)
    return ElboTerms(recon, kl)


def training_loss(terms: ElboTerms, beta, scale):
    """vaelab's minimised objective, Σ_b [−(1/L) Σ_l log p(x_b|z_bl) + β KL_b] · scale, where scale
    is 1/B for a plain mean; a data-parallel process passes world_size / global_batch, so that the
    average DistributedDataParallel takes over processes is the mean over the whole batch."""
    return (-terms.recon.mean(1) + beta * terms.kl.mean(1)).sum() * scale


class Evaluation(NamedTuple):
    count: int
    elbo: float   # mean over examples of E_q[log p(x|z)] − KL (nats, negative)
    recon: float
    kl: float
    # Mean over examples of the variance of a one-sample ELBO estimate (log p(x|z) − KL at one z),
    # from the spread of the L samples (0 when L = 1): what Monte-Carlo noise a one-sample
    # evaluation such as vaelab's adds to the mean, as √(sample_variance / count).
    sample_variance: float


@torch.no_grad()
def evaluate(model, images, samples=1, batch=500, generator=None, noise=None):
    """The test ELBO of images (N, D) in [0, 1] with `samples` draws of z per example, as vaelab's
    evaluate() does with EvalOptions::samples (vaelab-train uses 1). The draws come from generator,
    or are given as noise (N, samples, d): ε for every image and sample."""
    model.eval()
    device = next(model.parameters()).device
    n = images.shape[0]
    d = model.config.latent
    recon_sum = kl_sum = var_sum = 0.0
    for lo in range(0, n, batch):
        x = images[lo:lo + batch].to(device=device, dtype=torch.float32)
        per_sample = []
        recon_b = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
        kl_b = torch.zeros_like(recon_b)
        for _ in range(samples):  # one sample at a time bounds the decoder output to batch × D
            if noise is None:
                eps = torch.randn(x.shape[0], 1, d, generator=generator).to(device)
            else:
                eps = noise[lo:lo + batch, len(per_sample):len(per_sample) + 1].to(device)
            t = elbo_terms(model, x, eps)
            recon_b += t.recon[:, 0].double()
            kl_b += t.kl[:, 0].double()
            per_sample.append(t.elbo[:, 0].double())
        recon_sum += (recon_b / samples).sum().item()
        kl_sum += (kl_b / samples).sum().item()
        if samples > 1:
            var_sum += torch.stack(per_sample, 1).var(1).sum().item()
    model.train()
    return Evaluation(n, (recon_sum - kl_sum) / n, recon_sum / n, kl_sum / n, var_sum / n)
