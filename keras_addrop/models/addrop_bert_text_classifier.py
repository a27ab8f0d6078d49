import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_text_classifier import family_class
from keras_addrop.train_step import with_addrop_arguments


@family_class
@keras_addrop_export("keras_addrop.models.ADDropBertTextClassifier")
@with_addrop_arguments
class ADDropBertTextClassifier(
    ADDropTextClassifier, keras_hub.models.BertTextClassifier
):
    """A keras-hub BERT classifier fine-tuned with AD-DROP.

    `keras_hub.models.BertTextClassifier` with the self-attention of every
    encoder layer swapped for `keras_addrop.layers.ADDropAttention` (same
    weights) and AD-DROP's two-pass `train_step`: each step first attributes
    the prediction (the pseudo label's logit) to the attention weights of
    the selected layers, then trains on the batch with a share of the
    highest-attribution positions dropped from each attention row.
    Evaluation and prediction never apply AD-DROP, so `predict` and
    `evaluate` match the stock classifier with the same weights, and
    `.weights.h5` files load both ways between the two.

    Without a callback, AD-DROP runs on every epoch (the paper's "w/o
    cross-tuning"). Pass `keras_addrop.callbacks.CrossTuning()` to `fit` for
    the paper's schedule: plain fine-tuning on odd epochs (1, 3, ...), AD-DROP
    on even ones. Training logs carry `addrop_drop_fraction`, the share of
    real attention positions (real query x real key, selected layers, all
    heads) dropped, averaged over the epoch.

    `backbone_cls` stays `keras_hub.models.BertBackbone`, so `from_preset`
    takes what `BertTextClassifier.from_preset` takes: a preset name, a local
    keras-hub preset folder or a local Hugging Face folder (pass
    `num_classes`), plus the AD-DROP arguments. A preset holding a fine-tuned
    stock `BertTextClassifier` loads with its classification head.

    Trains on the TensorFlow, JAX and PyTorch backends with the same masks
    and numbers; `.keras` and `.weights.h5` files move between them.

    Args:
        backbone: a `keras_hub.models.BertBackbone`. Its attention layers are
            converted in place (see `keras_addrop.swap_attention`).
        num_classes: int. Number of classes; 1 for regression (STS-B).
        preprocessor: `None` or a
            `keras_hub.models.BertTextClassifierPreprocessor`.
        activation: as in `keras_hub.models.BertTextClassifier`.
        dropout: float. Dropout before the classification head.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.BertTextClassifier`.

    Raises:
        ValueError: for `candidate_ratio` or `drop_rate` outside [0, 1], a
            layer index out of range or an unknown string.

    Example:

    ```python
    # A local Hugging Face folder, e.g. the MiniLM-L6 package's.
    classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        "path/to/model", num_classes=2, candidate_ratio=0.3, drop_rate=0.3,
        addrop_layers="all",
    )
    classifier.fit(
        x=(["The cat sat."], ["A cat was sitting."]), y=[1], epochs=4,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    )

    # A randomly initialised tiny model, no preprocessing.
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    classifier = keras_addrop.models.ADDropBertTextClassifier(
        backbone, num_classes=2, addrop_layers="all"
    )
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.BertTextClassifier
    _family = "BERT"
