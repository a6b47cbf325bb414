"""Tiny transformers models with random weights, written into a folder: real loading code, no hub.

A BERT of 2 layers and width 32 over a word-level vocabulary written to vocab.txt, saved with
`save_pretrained` exactly as a user's fine-tuned model would be. Deterministic for a seed.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("good great fine fresh fun love best superb bad awful dull rotten boring worst hate weak movie film "
         "plot actor story the a an is was and but not very this it of to in london paris apple google john "
         "mary works lives at for").split()


def _vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return vocab


def _config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=48, max_position_embeddings=64, **extra)


def _save(model, folder: Path) -> Path:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab=str(_vocab(folder)), do_lower_case=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_encoder(folder: Path, seed: int = 0, *, sentence_transformers: bool = True) -> Path:
    """A bare BertModel folder; with `sentence_transformers`, the modules.json and mean pooling config ST writes."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    _save(BertModel(_config()).eval(), folder)
    if sentence_transformers:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    return folder


def tiny_classifier(folder: Path, labels: tuple[str, ...] = ("NEGATIVE", "POSITIVE"), seed: int = 0,
                    lean: dict[str, str] | None = None) -> Path:
    """A BertForSequenceClassification folder a text-classification `pipeline()` loads.

    `lean`: word -> label; the output layer is set so each word pulls strongly towards its label (random
    weights elsewhere), which makes the model's answers predictable enough to test mapping through.
    """
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = _config(id2label=dict(enumerate(labels)), label2id={lb: i for i, lb in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    if lean:
        _lean(model, lean, labels)
    return _save(model, folder)


def _lean(model, lean: dict[str, str], labels: tuple[str, ...]) -> None:
    """Make the word embeddings of `lean`'s words carry their label through to the classifier output."""
    import torch

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    with torch.no_grad():
        # attention is uniform (zero queries and keys) and passes values through, the feed-forward adds nothing:
        # [CLS] ends up with the mean of the words' embeddings, and only `lean`'s words have one (along their label)
        for layer in model.bert.encoder.layer:
            attn = layer.attention.self
            for lin in (attn.query, attn.key):
                lin.weight.zero_()
                lin.bias.zero_()
            for lin in (attn.value, layer.attention.output.dense):
                lin.weight.copy_(torch.eye(32))
                lin.bias.zero_()
            layer.output.dense.weight.zero_()
            layer.output.dense.bias.zero_()
        emb = model.bert.embeddings.word_embeddings.weight
        emb.zero_()
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
        for word, label in lean.items():
            emb[vocab.index(word), labels.index(label)] = 3.0
        model.bert.pooler.dense.weight.copy_(torch.eye(32))
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for j in range(len(labels)):
            model.classifier.weight[j, j] = 4.0


def tiny_token_classifier(folder: Path, labels: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC"),
                          lean: dict[str, str] | None = None, seed: int = 0) -> Path:
    """A BertForTokenClassification folder a token-classification `pipeline()` loads.

    `lean`: word -> tag (e.g. "john" -> "B-PER"): each token keeps its own embedding (attention and
    feed-forward add nothing), only `lean`'s words have one, along their tag; every other word is "O".
    """
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    config = _config(id2label=dict(enumerate(labels)), label2id={lb: i for i, lb in enumerate(labels)})
    model = BertForTokenClassification(config).eval()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for lin in (layer.attention.output.dense, layer.output.dense):
                lin.weight.zero_()
                lin.bias.zero_()
        model.bert.embeddings.word_embeddings.weight.zero_()
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
        for word, tag in (lean or {}).items():
            model.bert.embeddings.word_embeddings.weight[vocab.index(word), labels.index(tag)] = 3.0
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[labels.index("O")] = 1.0
        for j in range(len(labels)):
            model.classifier.weight[j, j] = 4.0
    return _save(model, folder)


def tiny_vision(folder: Path, seed: int = 0) -> Path:
    """A ViTModel folder (32 px, patches of 8, width 32, 2 layers) with the preprocessor config users ship."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=48)
    ViTModel(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}))
    return folder
