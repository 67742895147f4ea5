# Image data for PyTorch training: an MNIST-layout IDX folder (what vaelab reads) or an .npz file
# with x_train / x_test (+ y_train / y_test) as Keras's mnist.npz, read with torch and the standard
# library; pixels → [0, 1] as vaelab does. Not a streaming loader: both sets are held in memory.
import ast
import gzip
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Dataset:
    name: str
    train: torch.Tensor  # (N, H, W): uint8 (0..255) or float32 (in [0, 1])
    test: torch.Tensor
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None

    @property
    def image_size(self):
        return int(self.train.shape[1]), int(self.train.shape[2])


def as_float(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) → (N, H·W) float32 in [0, 1]: byte / 255 as vaelab's gather_batch does."""
    flat = images.reshape(images.shape[0], -1)
    if flat.dtype == torch.uint8:
        return flat.to(torch.float32) / 255.0
    return flat.to(torch.float32)


# ---- IDX ----

def _open_maybe_gzip(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path) -> torch.Tensor:
    """An unsigned-byte IDX file (gzipped or raw) as a uint8 tensor of its dimensions."""
    with _open_maybe_gzip(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    if data[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{data[2]:02X} is not unsigned bytes (0x08)")
    ndims = data[3]
    dims = struct.unpack(f">{ndims}I", data[4:4 + 4 * ndims])
    payload = data[4 + 4 * ndims:]
    if len(payload) != math.prod(dims):
        raise ValueError(f"{path}: the header promises {math.prod(dims)} bytes, the file holds {len(payload)}")
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(dims)


def _find(folder, prefix, kind, idx_dims):
    for stem in (f"{prefix}-{kind}-idx{idx_dims}-ubyte", f"{prefix}-{kind}.idx{idx_dims}-ubyte"):
        for ext in ("", ".gz"):
            p = os.path.join(folder, stem + ext)
            if os.path.isfile(p):
                return p
    return None


def _as_images(a: torch.Tensor, where):
    """(N, H, W), (N, H, W, 1), (N, 1, H, W) or (N, D) (taken as N × 1 × D, as vaelab does)."""
    if a.dim() == 2:
        return a.reshape(a.shape[0], 1, a.shape[1])
    if a.dim() == 4 and a.shape[3] == 1:
        return a[..., 0]
    if a.dim() == 4 and a.shape[1] == 1:
        return a[:, 0]
    if a.dim() == 3:
        return a
    raise ValueError(f"{where}: images of shape {tuple(a.shape)}; expected (N, H, W), (N, H, W, 1) or (N, D)")


def load_idx_folder(folder) -> Dataset:
    paths = {}
    for prefix, what in (("train", "training images"), ("t10k", "test images")):
        p = _find(folder, prefix, "images", 3)
        if p is None:
            raise FileNotFoundError(f"data folder '{folder}' has no {what}: expected {prefix}-images-idx3-ubyte[.gz]")
        paths[prefix] = p
    ds = Dataset(os.path.basename(os.path.normpath(folder)),
                 _as_images(read_idx(paths["train"]), paths["train"]),
                 _as_images(read_idx(paths["t10k"]), paths["t10k"]))
    for prefix, attr in (("train", "train_labels"), ("t10k", "test_labels")):
        p = _find(folder, prefix, "labels", 1)
        if p is not None:
            setattr(ds, attr, read_idx(p).to(torch.int64))
    return ds


# ---- NumPy .npz (a zip of .npy files) ----

_NPY_DTYPES = {"u1": torch.uint8, "i1": torch.int8, "i2": torch.int16, "i4": torch.int32, "i8": torch.int64,
               "f4": torch.float32, "f8": torch.float64}


def parse_npy(data: bytes, where) -> torch.Tensor:
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{where}: not a .npy array")
    major = data[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    descr, shape, fortran = header["descr"], tuple(header["shape"]), header["fortran_order"]
    order, code = descr[0], descr[1:]
    if code not in _NPY_DTYPES or (order == ">" and code not in ("u1", "i1")):
        raise ValueError(f"{where}: dtype {descr} is not one this reader takes (little-endian ints, f4, f8)")
    dtype = _NPY_DTYPES[code]
    body = bytearray(data[start + hlen:])
    t = torch.frombuffer(body, dtype=dtype) if math.prod(shape) else torch.zeros(0, dtype=dtype)
    if fortran:
        return t.reshape(shape[::-1]).permute(*reversed(range(len(shape)))).contiguous()
    return t.reshape(shape)


def load_npz(path) -> Dataset:
    with zipfile.ZipFile(path) as z:
        names = {n[:-4] if n.endswith(".npy") else n: n for n in z.namelist()}

        def get(key, required):
            if key not in names:
                if required:
                    raise KeyError(f"{path}: no array '{key}' (found: {', '.join(sorted(names))})")
                return None
            return parse_npy(z.read(names[key]), f"{path}:{key}")

        train = _as_images(get("x_train", True), f"{path}:x_train")
        test = _as_images(get("x_test", True), f"{path}:x_test")
        y_train, y_test = get("y_train", False), get("y_test", False)
    for key, a in (("x_train", train), ("x_test", test)):
        if a.dtype != torch.uint8 and a.numel() and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{path}:{key}: pixels that are not uint8 must lie in [0, 1] (uint8 ones are divided by 255)")
    if train.dtype != torch.uint8 or test.dtype != torch.uint8:  # one kind for both sets: floats in [0, 1]
        train = as_float(train).reshape(train.shape)
        test = as_float(test).reshape(test.shape)
    return Dataset(os.path.splitext(os.path.basename(path))[0], train, test,
                   None if y_train is None else y_train.to(torch.int64).reshape(-1),
                   None if y_test is None else y_test.to(torch.int64).reshape(-1))


def load_dataset(path) -> Dataset:
    """A folder in the MNIST layout, or an .npz file."""
    ds = load_npz(path) if os.path.isfile(path) else load_idx_folder(path)
    if ds.train.shape[1:] != ds.test.shape[1:]:
        raise ValueError(f"{path}: training images are {tuple(ds.train.shape[1:])}, test images "
                         f"{tuple(ds.test.shape[1:])}; both sets must have the same size")
    return ds
