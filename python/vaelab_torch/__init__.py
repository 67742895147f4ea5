# vaelab_torch: vaelab's model families, loss and run folder for PyTorch, so a run trained with
# PyTorch (one GPU, or many machines with DistributedDataParallel) can be explored in vaelab.
# Not a trainer by itself (python/train_ddp.py is one) and not a copy of vaelab's UI.
from .config import ModelConfig, LIKELIHOODS, FAMILIES
from .models import build_model, MlpVae, ConvVae, ClusteringVae
from .objective import ElboTerms, elbo_terms, evaluate
from .safetensors_io import write_safetensors, read_safetensors, model_to_safetensors, model_from_safetensors
from .run_writer import RunWriter
from .files import write_file_atomically
from .data import Dataset, load_dataset

__all__ = [
    "ModelConfig", "LIKELIHOODS", "FAMILIES",
    "build_model", "MlpVae", "ConvVae", "ClusteringVae",
    "ElboTerms", "elbo_terms", "evaluate",
    "write_safetensors", "read_safetensors", "model_to_safetensors", "model_from_safetensors",
    "RunWriter", "write_file_atomically",
    "Dataset", "load_dataset",
]
