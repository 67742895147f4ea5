# The clustering VAE's one-time refit of its cluster Gaussians onto k-means of the codes, as vaelab's
# trainer does at its cluster-fit step (core/model.cpp fit_clusters_to_codes), in torch.
# Same method, not the same bits: k-means here draws its seeds from a torch generator.
import torch

from .config import LOGVAR_MAX, LOGVAR_MIN


def kmeans(points, k, generator, max_iter=100):
    """k-means++ seeding, then Lloyd steps until the assignment repeats (or max_iter). A cluster
    left empty takes the point farthest from its centre among clusters of ≥ 2 points, so all k
    stay non-empty. points: (N, d) with N ≥ k → assignment (N,) in [0, k)."""
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [points[first]]
    d2 = (points - centers[0]).square().sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            pick = int(torch.multinomial((d2 / total).cpu(), 1, generator=generator))
        else:
            pick = int(torch.randint(n, (1,), generator=generator))
        centers.append(points[pick])
        d2 = torch.minimum(d2, (points - points[pick]).square().sum(1))
    centers = torch.stack(centers)
    assignment = None
    for _ in range(max_iter):
        dist = torch.cdist(points, centers).square()
        new = dist.argmin(1)
        for y in range(k):
            if not (new == y).any():
                counts = torch.bincount(new, minlength=k)
                own = dist.gather(1, new[:, None])[:, 0]
                own[counts[new] < 2] = -1.0
                new[int(own.argmax())] = y
        if assignment is not None and torch.equal(new, assignment):
            break
        assignment = new
        for y in range(k):
            centers[y] = points[assignment == y].mean(0)
    return assignment


@torch.no_grad()
def fit_clusters_to_codes(model, mu, logvar, generator):
    """One moment-matched Gaussian per k-means cluster of the means: μ_y the mean of its codes,
    σ_y² per dimension the variance of those means plus the mean of their q variances, log σ_y²
    clamped. Then the classifier's last layer restarts at zero (uniform p(y|z)), as vaelab's does."""
    K = model.config.clusters
    a = kmeans(mu.double(), K, generator)
    for y in range(K):
        m, v = mu[a == y].double(), logvar[a == y].double().exp()
        mean = m.mean(0)
        var = (m.square().mean(0) - mean.square()).clamp_min(0.0) + v.mean(0)
        model.cluster_means[y] = mean.to(model.cluster_means)
        model.cluster_logvars[y] = var.log().clamp(LOGVAR_MIN, LOGVAR_MAX).to(model.cluster_logvars)
    model.classifier[1].weight.zero_()
    model.classifier[1].bias.zero_()
    return [model.cluster_means, model.cluster_logvars, model.classifier[1].weight, model.classifier[1].bias]
