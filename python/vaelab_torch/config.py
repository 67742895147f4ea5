# The model settings vaelab records in a safetensors file's metadata (core/config.hpp's ModelConfig),
# with the same limits as vaelab's validate(). Plain data: no tensors, no training settings.
from dataclasses import dataclass, field

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")
FAMILIES = ("mlp", "conv", "gmvae")

# Width of the clustering VAE's classifier p(y|z) hidden layer (vaelab's kClassifierHidden).
CLASSIFIER_HIDDEN = 64
# Clamps on log σ² of q(z|x) and of the learned decoder variance (core/model.hpp).
LOGVAR_MIN = -20.0
LOGVAR_MAX = 10.0
DECODER_LOGVAR_MIN = -9.0


@dataclass
class ModelConfig:
    image_h: int = 28
    image_w: int = 28
    latent: int = 20
    hidden: list = field(default_factory=lambda: [400])  # encoder widths; the decoder mirrors them
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 0.1  # only for "gaussian"
    family: str = "mlp"
    clusters: int = 10  # only for "gmvae"

    @property
    def input_dim(self):
        return self.image_h * self.image_w

    def validate(self):
        """Raises ValueError naming the first setting vaelab would refuse."""
        def require(ok, what, value, allowed):
            if not ok:
                raise ValueError(f"{what} is {value}; allowed: {allowed}")
        require(1 <= self.image_h <= 4096, "image height", self.image_h, "1 to 4096")
        require(1 <= self.image_w <= 4096, "image width", self.image_w, "1 to 4096")
        require(self.input_dim <= 1 << 20, "pixels per image", self.input_dim, "at most 1048576")
        require(1 <= self.latent <= 1024, "latent size", self.latent, "1 to 1024")
        require(1 <= len(self.hidden) <= 8, "number of hidden layers", len(self.hidden), "1 to 8")
        for h in self.hidden:
            require(1 <= h <= 8192, "hidden width", h, "1 to 8192")
        require(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, " | ".join(LIKELIHOODS))
        require(self.gaussian_sigma > 0, "gaussian sigma", self.gaussian_sigma, "> 0")
        require(self.family in FAMILIES, "model family", self.family, " | ".join(FAMILIES))
        if self.family == "gmvae":
            require(2 <= self.clusters <= 256, "clusters", self.clusters, "2 to 256")

    def metadata(self):
        """The "__metadata__" entries vaelab's export_model writes for this model."""
        meta = {
            "format": "vaelab-vae",
            "image_h": str(self.image_h),
            "image_w": str(self.image_w),
            "latent": str(self.latent),
            "likelihood": self.likelihood,
            "gaussian_sigma": repr(float(self.gaussian_sigma)),
        }
        if self.family == "conv":
            meta["family"] = "conv"
        elif self.family == "gmvae":
            meta["family"] = "gmvae"
            meta["clusters"] = str(self.clusters)
        return meta
