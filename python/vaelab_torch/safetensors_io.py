# The safetensors format with torch and the standard library only (8-byte header length, JSON
# header padded to 8 bytes, raw little-endian tensors), and the model ↔ file mapping vaelab uses.
# Not a general reader: dtypes F32, F64, F16 and BF16 only, as vaelab reads.
import ctypes
import json
import math
import struct
import sys

import torch

from .config import ModelConfig
from .files import write_file_atomically

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


def _raw_bytes(t: torch.Tensor) -> bytes:
    """The bytes of a float32 tensor in little-endian order."""
    t = t.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if t.numel() == 0:
        return b""
    if sys.byteorder != "little":
        raise RuntimeError("writing safetensors needs a little-endian host")
    return ctypes.string_at(t.data_ptr(), t.numel() * 4)


def encode_safetensors(tensors, metadata=None) -> bytes:
    """tensors: name → tensor (written as F32, in the given order); metadata: str → str."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError('a tensor cannot be named "__metadata__"')
        raw = _raw_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # tensor data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_safetensors(path, tensors, metadata=None):
    """Atomically (temporary file, fsync, rename) writes a safetensors file."""
    write_file_atomically(path, encode_safetensors(tensors, metadata))


def decode_safetensors(data: bytes):
    """→ (name → float32 tensor in file order, metadata dict). Raises ValueError when malformed."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"the header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, rec in header.items():
        dtype = _DTYPES.get(rec["dtype"])
        if dtype is None:
            raise ValueError(f"tensor '{name}' has dtype {rec['dtype']}; readable: {', '.join(_DTYPES)}")
        begin, end = rec["data_offsets"]
        shape = rec["shape"]
        count = math.prod(shape)
        if not 0 <= begin <= end <= len(body) or (end - begin) != count * torch.finfo(dtype).bits // 8:
            raise ValueError(f"tensor '{name}' has data_offsets that do not fit its shape or the file")
        if count == 0:
            t = torch.zeros(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
        tensors[name] = t.to(torch.float32)
    return tensors, metadata


def read_safetensors(path):
    with open(path, "rb") as f:
        return decode_safetensors(f.read())


def model_tensors(model):
    """The model's parameters under vaelab's names (its state_dict), as float32 on the CPU."""
    return {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}


def model_to_safetensors(model, path, extra_metadata=None):
    """Writes model as a file vaelab's --import-safetensors accepts; extra_metadata is added to
    (and may not replace) the model's own entries."""
    meta = model.config.metadata()
    for k, v in (extra_metadata or {}).items():
        if k in meta:
            raise ValueError(f"metadata key '{k}' belongs to the model description")
        meta[k] = str(v)
    write_safetensors(path, model_tensors(model), meta)


def config_from_safetensors(tensors, metadata) -> ModelConfig:
    """The ModelConfig a vaelab file describes, from its metadata and tensor shapes."""
    cfg = ModelConfig()
    family = metadata.get("family", "mlp")
    cfg.family = family
    cfg.latent = int(tensors["fc21.weight"].shape[0])
    if "likelihood" in metadata:
        cfg.likelihood = metadata["likelihood"]
    elif "decoder_logvar" in tensors:
        cfg.likelihood = "gaussian-learned"
    if "gaussian_sigma" in metadata:
        cfg.gaussian_sigma = float(metadata["gaussian_sigma"])
    if family == "conv":
        cfg.hidden = [400]  # unused by the conv family, kept valid
    elif "fc1.weight" in tensors:
        cfg.hidden = [int(tensors["fc1.weight"].shape[0])]
    else:
        cfg.hidden = []
        while f"encoder.{len(cfg.hidden)}.weight" in tensors:
            cfg.hidden.append(int(tensors[f"encoder.{len(cfg.hidden)}.weight"].shape[0]))
    if "image_h" in metadata and "image_w" in metadata:
        cfg.image_h, cfg.image_w = int(metadata["image_h"]), int(metadata["image_w"])
    else:
        first = tensors["fc1.weight"] if "fc1.weight" in tensors else tensors["encoder.0.weight"]
        side = math.isqrt(int(first.shape[1]))
        cfg.image_h = cfg.image_w = side
    if family == "gmvae":
        cfg.clusters = int(tensors["classifier.1.weight"].shape[0])
    cfg.validate()
    return cfg


def model_from_safetensors(path, device="cpu"):
    """A model of the right family loaded from a vaelab file (strict: every tensor must fit)."""
    from .models import build_model
    tensors, metadata = read_safetensors(path)
    model = build_model(config_from_safetensors(tensors, metadata))
    model.load_state_dict(tensors, strict=True)
    return model.to(device)
