"""A user's own image encoder: a local transformers vision model folder (SUGGEST_IMAGE_ENCODER).

Any folder `AutoModel` loads with a `preprocessor_config.json` (ViT, DINOv2, a CLIP vision tower,
...): its input side and mean/std come from that file, its width from the model (the pooled output,
else the mean of the last hidden states), its id from its files (backends/user_encoder.model_identity).

Why a subclass of ImageEncoder: decoding stays the hardened path (format whitelist, decompression
bombs, memory caps, at most 3 decodes at once, EXIF orientation), batching and the run lock carry over,
and the cache keeps (encoder id, content hash). Only the network differs: `_VisionFeatures` wraps the
user's model in the `extract_features` shape ImageEncoder calls, undoing its EfficientNet scaling
((x - 127) / 128) and applying the model's own.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from backends.images import ImageEncoder
from backends.user_encoder import ModelFolderError, model_identity, resolve_model

log = logging.getLogger(__name__)


def check_image_model_folder(name: str) -> Path:
    """The resolved folder when it has a config, weights and a preprocessor config; else ModelFolderError."""
    folder = resolve_model(name)
    for required in ("config.json", "preprocessor_config.json"):
        if not (folder / required).exists():
            raise ModelFolderError(f"{folder} has no {required} (not a transformers vision model folder)")
    if not any((folder / f).exists() for f in ("model.safetensors", "pytorch_model.bin",
                                                 "model.safetensors.index.json")):
        raise ModelFolderError(f"{folder} has no weights (model.safetensors or pytorch_model.bin)")
    return folder


class _VisionFeatures:
    """The user's model behind ImageEncoder's `extract_features(batch) -> (n, dim, 1, 1)`."""

    def __init__(self, model, mean: list[float], std: list[float]):
        import torch

        self.model = model
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def eval(self) -> _VisionFeatures:
        self.model.eval()
        return self

    def to(self, device) -> _VisionFeatures:
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def extract_features(self, batch):
        pixels = (batch * 128.0 + 127.0) / 255.0  # back from ImageEncoder's scaling to [0, 1]
        out = self.model(pixel_values=(pixels - self.mean) / self.std)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(dim=1)
        return pooled.reshape(len(pooled), -1, 1, 1)


class UserImageEncoder(ImageEncoder):
    """L2-normalized image vectors from a user's vision model folder: its input side, width, normalization and id."""

    def __init__(self, model_path: str | Path, *, batch_size: int = 8, device: str | None = None):
        folder = check_image_model_folder(str(model_path))
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        size = pre.get("size", 224)
        side = int(size.get("height", size.get("shortest_edge", 224)) if isinstance(size, dict) else size)
        super().__init__(max(32, -(-side // 32) * 32), batch_size=batch_size, device=device)
        self.folder = folder
        self.mean = list(pre.get("image_mean", [0.5, 0.5, 0.5]))
        self.std = list(pre.get("image_std", [0.5, 0.5, 0.5]))
        config = json.loads((folder / "config.json").read_text())
        vision = config.get("vision_config", config)
        self._dim = int(vision["hidden_size"])
        self._identity = model_identity(folder)

    @property
    def encoder_id(self) -> str:
        return f"{self._identity}-{self.size}px"

    @property
    def dim(self) -> int:
        return self._dim

    def load(self) -> UserImageEncoder:
        with self._load_lock:
            if self._model is not None:
                return self
            started = time.perf_counter()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModel

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
            if hasattr(model, "vision_model") and not hasattr(model, "pooler"):
                model = model.vision_model  # a CLIP-style folder: the vision tower only
            self._model = _VisionFeatures(model, self.mean, self.std).eval().to(device)
            self._torch_device = torch.device(device)
            self.load_seconds = time.perf_counter() - started
            log.info("image encoder %s loaded on %s in %.1f s", self.encoder_id, device, self.load_seconds)
        return self


_shared: dict[str, UserImageEncoder] = {}
_lock = threading.Lock()


def user_image_encoder(model_path: str) -> UserImageEncoder:
    """The process-wide encoder for a folder (weights load once, on first use)."""
    with _lock:
        if model_path not in _shared:
            _shared[model_path] = UserImageEncoder(model_path)
        return _shared[model_path]
