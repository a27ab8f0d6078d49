"""A llama.cpp GGUF file of a Llama-architecture model as a Hugging Face
folder that keras-hub loads (dequantized to float32)."""

import json
import os
import shutil
import tempfile

import numpy as np

# GGUF tensor names -> Hugging Face names (`{i}`: the layer).
_LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# A token of this type is a control token (`<|im_start|>`, ...).
_CONTROL = 3


def _field(reader, key):
    return reader.fields[key].contents()


def _unpermute(weight, num_heads):
    """Undoes llama.cpp's rotary permutation of a query or key projection
    (`(out, in)`), per head: llama.cpp interleaves the two rotary halves."""
    out, inputs = weight.shape
    half = out // num_heads // 2
    weight = weight.reshape(num_heads, half, 2, inputs).swapaxes(1, 2)
    return weight.reshape(out, inputs)


def _hugging_face_folder(reader, folder):
    """Writes the Hugging Face folder keras-hub's Llama 3 converter reads:
    `config.json`, `model.safetensors`, `tokenizer.json`,
    `tokenizer_config.json`."""
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    epsilon = float(_field(reader, "llama.attention.layer_norm_rms_epsilon"))
    tensors = {}
    for tensor in reader.tensors:
        weight = dequantize(tensor.data, tensor.tensor_type)
        weight = np.ascontiguousarray(weight, dtype="float32")
        name = tensor.name.removesuffix(".weight")
        if name == "token_embd":
            key = "model.embed_tokens"
        elif name == "output_norm":
            key = "model.norm"
        elif name == "output":
            key = "lm_head"
        else:
            _, layer, part = name.split(".")
            key = f"model.layers.{layer}.{_LAYER_TENSORS[part]}"
            if part == "attn_q":
                weight = _unpermute(weight, heads)
            elif part == "attn_k":
                weight = _unpermute(weight, kv_heads)
        tensors[f"{key}.weight"] = weight
    save_file(tensors, os.path.join(folder, "model.safetensors"))

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(_field(reader, "tokenizer.ggml.tokens")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_size": int(_field(reader, "llama.embedding_length")),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base")),
        "rms_norm_eps": epsilon,
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "torch_dtype": "float32",
    }
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    vocabulary = {token: i for i, token in enumerate(tokens)}
    added = [
        {"id": i, "content": token, "special": True}
        for i, (token, kind) in enumerate(zip(tokens, types))
        if kind == _CONTROL
    ]
    tokenizer = {
        "model": {
            "type": "BPE",
            "vocab": vocabulary,
            "merges": list(_field(reader, "tokenizer.ggml.merges")),
        },
        "added_tokens": added,
    }
    bos = tokens[int(_field(reader, "tokenizer.ggml.bos_token_id"))]
    eos = tokens[int(_field(reader, "tokenizer.ggml.eos_token_id"))]
    files = {
        "config.json": config,
        "tokenizer.json": tokenizer,
        "tokenizer_config.json": {"bos_token": bos, "eos_token": eos},
    }
    for name, content in files.items():
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f)


def convert_gguf_llama(gguf_path, preset_dir):
    """Converts a Llama-architecture GGUF file into a Hugging Face folder
    that keras-hub loads as a preset (`Llama3Backbone`, `Llama3Tokenizer`,
    `Llama3CausalLM`).

    The tensors are dequantized to float32 (a quantized file stays as lossy
    as it was), llama.cpp's rotary permutation of the query and key
    projections is undone, and the tokenizer is rebuilt from the file's
    vocabulary, merges and control tokens, with its start and end tokens.
    keras-hub 0.32's converter reads neither the RMS-norm epsilon (it uses
    1e-6; SmolLM2's file says 1e-5) nor anything else the folder's
    `config.json` holds beyond the sizes, rotary base and tied embeddings.
    The folder appears whole or not at all.

    Needs the `gguf` and `safetensors` packages.

    Args:
        gguf_path: the `.gguf` file.
        preset_dir: the folder to write. Where another process writes it
            first, that folder stays.
    """
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    parent = os.path.dirname(os.path.abspath(preset_dir))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=".converting-")
    try:
        _hugging_face_folder(reader, work)
        os.replace(work, preset_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        # Another process converted it first (two test workers, say).
        if not os.path.isfile(os.path.join(preset_dir, "model.safetensors")):
            raise
