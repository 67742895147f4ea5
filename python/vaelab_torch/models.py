# vaelab's three model families as torch.nn.Modules whose state_dict names and layouts are the ones
# vaelab's safetensors import expects (core/safetensors.cpp), so a state_dict is a vaelab file.
# Not the loss (objective.py) and not the file format (safetensors_io.py).
import torch
from torch import nn
import torch.nn.functional as F

from .config import CLASSIFIER_HIDDEN, DECODER_LOGVAR_MIN, LOGVAR_MAX, LOGVAR_MIN, ModelConfig
from .objective import elbo_terms


class _Vae(nn.Module):
    """What every family shares: the config, the decoder's Gaussian log σ², and forward = the
    loss terms (so DistributedDataParallel sees the whole step as one forward call)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        if cfg.likelihood == "gaussian-learned":
            # vaelab's learned shared log σ², starting at 0; tensor name "decoder_logvar", shape [1].
            self.decoder_logvar = nn.Parameter(torch.zeros(1))

    def decoder_log_variance(self):
        """The decoder's log σ² as vaelab uses it: 2 log σ (fixed), the clamped parameter (learned),
        0 for Bernoulli (unused there)."""
        lik = self.config.likelihood
        if lik == "gaussian-learned":
            return self.decoder_logvar.clamp(DECODER_LOGVAR_MIN, LOGVAR_MAX)[0]
        ref = next(self.parameters())
        if lik == "gaussian":
            sigma = torch.tensor(self.config.gaussian_sigma, dtype=torch.float32, device=ref.device)
            return 2.0 * torch.log(sigma)
        return torch.zeros((), dtype=ref.dtype, device=ref.device)

    def _heads(self, h):
        mu = self.fc21(h)
        logvar = self.fc22(h).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return mu, logvar

    def forward(self, x, eps):
        """x (B, D), eps (B, L, d) → objective.ElboTerms: the loss terms of one batch."""
        return elbo_terms(self, x, eps)


def _dense_chain(widths):
    return [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]


class MlpVae(_Vae):
    """MLP encoder x → hidden… → (μ, log σ²) and mirrored decoder z → hidden… → logits or means.
    One hidden layer uses PyTorch examples/vae's names (fc1, fc21, fc22, fc3, fc4); more use
    encoder.{i}, fc21, fc22, decoder.{i}, as vaelab does."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, d, hidden = cfg.input_dim, cfg.latent, list(cfg.hidden)
        enc = _dense_chain([D] + hidden)
        dec = _dense_chain([d] + hidden[::-1] + [D])
        if len(hidden) == 1:
            self.fc1 = enc[0]
            self.fc3, self.fc4 = dec
        else:
            self.encoder = nn.ModuleList(enc)
            self.decoder = nn.ModuleList(dec)
        self.fc21 = nn.Linear(hidden[-1], d)
        self.fc22 = nn.Linear(hidden[-1], d)
        self._enc = enc  # plain lists: the layers are registered above under vaelab's names
        self._dec = dec

    def encode(self, x):
        """x: (B, D) in [0, 1] → μ, log σ² (clamped): (B, d) each."""
        h = x
        for layer in self._enc:
            h = F.relu(layer(h))
        return self._heads(h)

    def decode(self, z):
        """z: (B, d) → the decoder's raw output (B, D): Bernoulli logits or Gaussian means."""
        h = z
        for layer in self._dec[:-1]:
            h = F.relu(layer(h))
        return self._dec[-1](h)


def _conv_sizes(H, W):
    """vaelab's conv_vae_geometries: stride-2 pad-1 layers give ⌈n/2⌉; a transposed stride-2 layer
    gives 2n − 1 + output_padding, so output_padding is 1 where the encoder-side size was even."""
    half = lambda n: (n + 1) // 2
    h1, w1 = half(H), half(W)
    h2, w2 = half(h1), half(w1)
    op = lambda n: 1 if n % 2 == 0 else 0
    return (h1, w1), (h2, w2), (op(h1), op(w1)), (op(H), op(W))


class ConvVae(_Vae):
    """Conv 3×3 32 s2 → ReLU → Conv 3×3 64 s2 → ReLU → (fc21, fc22); decoder dec_fc → ReLU →
    ConvT 3×3 64 s2 → ReLU → ConvT 3×3 32 s2 → ReLU → ConvT 3×3 1 s1 (core/conv.hpp)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        H, W, d = cfg.image_h, cfg.image_w, cfg.latent
        _, (h2, w2), op1, op2 = _conv_sizes(H, W)
        self._small = (h2, w2)
        self.enc_conv1 = nn.Conv2d(1, 32, 3, stride=2, padding=1)
        self.enc_conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc21 = nn.Linear(64 * h2 * w2, d)
        self.fc22 = nn.Linear(64 * h2 * w2, d)
        self.dec_fc = nn.Linear(d, 32 * h2 * w2)
        self.dec_deconv1 = nn.ConvTranspose2d(32, 64, 3, stride=2, padding=1, output_padding=op1)
        self.dec_deconv2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=op2)
        self.dec_deconv3 = nn.ConvTranspose2d(32, 1, 3, stride=1, padding=1)

    def encode(self, x):
        cfg = self.config
        h = x.reshape(-1, 1, cfg.image_h, cfg.image_w)
        h = F.relu(self.enc_conv1(h))
        h = F.relu(self.enc_conv2(h))
        return self._heads(h.flatten(1))

    def decode(self, z):
        h2, w2 = self._small
        h = F.relu(self.dec_fc(z)).reshape(-1, 32, h2, w2)
        h = F.relu(self.dec_deconv1(h))
        h = F.relu(self.dec_deconv2(h))
        return self.dec_deconv3(h).flatten(1)


class ClusteringVae(MlpVae):
    """The clustering VAE: vaelab's MLP VAE plus a classifier p(y|z) (classifier.0: z → 64, ReLU,
    classifier.1: 64 → K) and K diagonal Gaussians q(z|y) (cluster_means, cluster_logvars: [K, d]).
    Cluster means start like prior samples, log variances at 0, as vaelab's init does."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        K, d = cfg.clusters, cfg.latent
        self.classifier = nn.ModuleList([nn.Linear(d, CLASSIFIER_HIDDEN), nn.Linear(CLASSIFIER_HIDDEN, K)])
        self.cluster_means = nn.Parameter(torch.randn(K, d))
        self.cluster_logvars = nn.Parameter(torch.zeros(K, d))

    def classify_logits(self, z):
        """z: (N, d) → logits of p(y|z): (N, K)."""
        return self.classifier[1](F.relu(self.classifier[0](z)))

    def cluster_logvars_clamped(self):
        return self.cluster_logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)


def build_model(cfg: ModelConfig) -> _Vae:
    """A freshly initialised model of cfg's family (PyTorch's default init, which is vaelab's)."""
    return {"mlp": MlpVae, "conv": ConvVae, "gmvae": ClusteringVae}[cfg.family](cfg)
