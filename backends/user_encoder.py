"""A user's own text encoder: a local sentence-transformers or transformers model folder (SUGGEST_TEXT_ENCODER).

Why a subclass of TextEncoder and not a new encoder: batching by token budget, the run lock, the
weights shared per folder, `encode_tokens` for spans and the (encoder id, content hash) cache all
carry over; what differs is where the weights come from, the width (the model's `hidden_size`), the
pooling (the sentence-transformers folder's own: mean or CLS over the last layer) and the id.

The encoder id names the model's identity, not just its folder: `<folder name>-<8 hex>` where the
hash covers the relative name, size and (sampled) content of every file in the folder, so a fine-tuned
model saved under the same folder name gets new cached vectors instead of its predecessor's. Nothing is fetched
from a hub: a hub id is accepted only when that model is already in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

import numpy as np

from backends.encoders import LAST_LAYER_ONLY, TextEncoder

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelFolderError(ValueError):
    """A model setting names something that is not a loadable local model; the message says what is missing."""


def resolve_model(name: str) -> Path:
    """The local folder for a setting's value: a folder, or a hub id already in the local Hugging Face cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if _HUB_ID.match(name) and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
        except Exception:
            raise ModelFolderError(f"{name!r} is not a folder, and as a model hub id it is not in the local Hugging "
                                   "Face cache (suggest never downloads: fetch it once where a hub is reachable, "
                                   "e.g. `hf download`, or give the folder)") from None
    raise ModelFolderError(f"{name!r} is not a model folder")


def check_model_folder(name: str, *, classifier: bool = False) -> Path:
    """The resolved folder when it has what transformers needs to load it (config, weights, tokenizer); else
    ModelFolderError. Cheap (no torch): a start-up check that turns a typo into one line, not a late traceback."""
    folder = resolve_model(name)
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise ModelFolderError(f"{folder} has no config.json (not a transformers model folder)") from None
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{folder}/config.json does not read as JSON ({exc})") from None
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        raise ModelFolderError(f"{folder} has no weights ({' or '.join(WEIGHT_FILES[:2])})")
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise ModelFolderError(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])})")
    if classifier and not config.get("id2label"):
        raise ModelFolderError(f"{folder}/config.json names no id2label: not a classification model")
    if not classifier and not isinstance(config.get("hidden_size", config.get("d_model", config.get("dim"))), int):
        raise ModelFolderError(f"{folder}/config.json gives no hidden_size: cannot tell the embedding width")
    return folder


_SAMPLE = 1 << 20


def model_identity(folder: Path) -> str:
    """`<folder name>-<8 hex>`: a hash of every file's relative name, size and content, so another model (a
    fine-tune of the same architecture has the same sizes) never shares ids. Files over 4 MiB are sampled
    (first, middle and last MiB: weights that changed differ everywhere), so a 1 GB model costs milliseconds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\n".encode())
        with path.open("rb") as fh:
            if size <= 4 * _SAMPLE:
                digest.update(fh.read())
                continue
            for offset in (0, size // 2, size - _SAMPLE):
                fh.seek(offset)
                digest.update(fh.read(_SAMPLE))
    name = re.sub(r"[^\w.-]+", "_", folder.name) or "model"
    return f"{name}-{digest.hexdigest()[:8]}"


def _pooling(folder: Path) -> str:
    """"mean" or "cls": what the sentence-transformers folder says (1_Pooling/config.json); mean for a bare model."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        pool_dir = next(m["path"] for m in modules if m.get("type", "").endswith("Pooling"))
        pool = json.loads((folder / pool_dir / "config.json").read_text())
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        return "mean"
    if pool.get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


class UserTextEncoder(TextEncoder):
    """L2-normalized sentence vectors from a user's model folder: its width, its pooling, an id of its identity."""

    def __init__(self, model_path: str | Path, *, batch_size: int = 64, max_length: int | None = None,
                 token_budget: int = 4096):
        folder = check_model_folder(str(model_path))
        config = json.loads((folder / "config.json").read_text())
        limit = int(config.get("max_position_embeddings") or 512)
        super().__init__(str(folder), layers=LAST_LAYER_ONLY, batch_size=batch_size,
                         max_length=min(max_length or 256, limit), token_budget=token_budget)
        self.setting_value = str(model_path)
        self.pooling = _pooling(folder)
        self._dim = int(config.get("hidden_size", config.get("d_model", config.get("dim"))))
        self._n_layers = int(config.get("num_hidden_layers", config.get("n_layers", 0)) or 0)
        self._identity = model_identity(folder)

    @property
    def base_id(self) -> str:
        return self._identity + ("" if self.pooling == "mean" else f"+{self.pooling}")

    @property
    def dim(self) -> int:
        return self._dim

    def _pool(self, texts, layers, progress):
        if self.pooling == "mean":
            return super()._pool(texts, layers, progress)
        out = np.zeros((len(texts), 1, self.dim), dtype=np.float32)  # CLS: the first token's last state
        if not texts:
            return out
        self.load()
        import torch

        with self._run_lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(texts[start:start + self.batch_size], truncation=True,
                                        max_length=self.max_length, padding=True, return_tensors="pt")
                out[start:start + len(batch["input_ids"]), 0] = self._model(**batch).last_hidden_state[:, 0].numpy()
                if progress:
                    progress(len(batch["input_ids"]))
        return out

    def _hidden_at(self, batch, layer: int):
        """A span tagger's middle layer, clamped to this model's depth (a 2-layer model has no layer 4)."""
        if self._n_layers and layer > self._n_layers:
            layer = -1
        return super()._hidden_at(batch, layer)


_shared: dict[str, UserTextEncoder] = {}
_lock = threading.Lock()


def user_text_encoder(model_path: str) -> UserTextEncoder:
    """The process-wide encoder for a folder (weights load once, on first use)."""
    key = os.fspath(model_path)
    with _lock:
        if key not in _shared:
            _shared[key] = UserTextEncoder(key)
        return _shared[key]
