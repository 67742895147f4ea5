# The run folder a PyTorch training writes and vaelab follows: weights.safetensors (replaced
# atomically every N steps and at the end), metrics.jsonl (JSON lines, the last {"finished": true})
# and run.json (the settings). Not the resume state: the trainer keeps its own.
import json
import math
import os
import time

from .files import write_file_atomically
from .safetensors_io import model_to_safetensors

WEIGHTS = "weights.safetensors"
METRICS = "metrics.jsonl"
SETTINGS = "run.json"


def _json_value(v):
    """Numbers as JSON numbers (NaN and ±Inf, which JSON lacks, as null); other values as given."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunWriter:
    """Writes one run folder. Only one process may write it (rank 0 of a distributed run).

    write_every: weights are written when a step number is a multiple of it (0: only at the end).
    resume_step: when continuing a run stopped at this step, metrics.jsonl keeps only its lines up
    to that step (later ones belong to steps that will be run again) and loses its "finished" line.
    """

    def __init__(self, folder, write_every, resume_step=None):
        self.folder = folder
        self.write_every = write_every
        os.makedirs(folder, exist_ok=True)
        self.metrics_path = os.path.join(folder, METRICS)
        self.weights_path = os.path.join(folder, WEIGHTS)
        if resume_step is None:
            write_file_atomically(self.metrics_path, b"")
        else:
            self._truncate_metrics(resume_step)
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")

    def _truncate_metrics(self, resume_step):
        kept = []
        if os.path.exists(self.metrics_path):
            with open(self.metrics_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:  # a line cut short when the run stopped
                        continue
                    if rec.get("finished") or rec.get("step", 0) > resume_step:
                        continue
                    kept.append(json.dumps(rec, separators=(",", ":")) + "\n")
        write_file_atomically(self.metrics_path, "".join(kept).encode("utf-8"))

    def write_settings(self, settings: dict):
        data = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        write_file_atomically(os.path.join(self.folder, SETTINGS), data.encode("utf-8"))

    def log(self, step, epoch, **scalars):
        """Appends one line {"step": …, "epoch": …, "time": unix seconds, **scalars} and flushes it,
        so a reader following the file sees whole lines as they come."""
        rec = {"step": int(step), "epoch": _json_value(epoch), "time": round(time.time(), 3)}
        rec.update({k: _json_value(v) for k, v in scalars.items()})
        self._metrics.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._metrics.flush()

    def due(self, step):
        return self.write_every > 0 and step > 0 and step % self.write_every == 0

    def write_weights(self, model, step, epoch):
        """The model as vaelab reads it; the metadata also says which step and epoch it is from."""
        model_to_safetensors(model, self.weights_path, {"step": int(step), "epoch": epoch})
        os.fsync(self._metrics.fileno())  # the metrics up to these weights are on disk too

    def finish(self, model, step, epoch, **scalars):
        """The final weights, then the line saying the run has ended."""
        self.write_weights(model, step, epoch)
        self.log(step, epoch, finished=True, **scalars)
        os.fsync(self._metrics.fileno())

    def close(self):
        self._metrics.close()
