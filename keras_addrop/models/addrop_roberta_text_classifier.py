import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_text_classifier import family_class
from keras_addrop.train_step import with_addrop_arguments


@family_class
@keras_addrop_export("keras_addrop.models.ADDropRobertaTextClassifier")
@with_addrop_arguments
class ADDropRobertaTextClassifier(
    ADDropTextClassifier, keras_hub.models.RobertaTextClassifier
):
    """A keras-hub RoBERTa classifier fine-tuned with AD-DROP.

    `keras_hub.models.RobertaTextClassifier` (the paper's second model) with
    every encoder's self-attention swapped for
    `keras_addrop.layers.ADDropAttention` (same weights) and AD-DROP's
    two-pass `train_step`. It behaves as
    `keras_addrop.models.ADDropBertTextClassifier` does: evaluation and
    prediction never apply AD-DROP, AD-DROP runs on every epoch unless
    `keras_addrop.callbacks.CrossTuning` is passed to `fit`, logs carry
    `addrop_drop_fraction`, and `from_preset` takes preset names, local
    keras-hub folders and local Hugging Face folders.

    Trains on the TensorFlow, JAX and PyTorch backends with the same masks
    and numbers.

    Args:
        backbone: a `keras_hub.models.RobertaBackbone`.
        num_classes: int. Number of classes; 1 for regression.
        preprocessor: `None` or a
            `keras_hub.models.RobertaTextClassifierPreprocessor`.
        activation: as in `keras_hub.models.RobertaTextClassifier`.
        hidden_dim: int. Size of the head's pooling layer; defaults to the
            backbone's hidden size.
        dropout: float. Dropout in the classification head.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.RobertaTextClassifier`.

    Raises:
        ValueError: for an out-of-range or unknown AD-DROP argument.

    Example:

    ```python
    classifier = keras_addrop.models.ADDropRobertaTextClassifier.from_preset(
        "roberta_base_en", num_classes=2, addrop_layers="all"
    )
    classifier.fit(
        x=(["The cat sat."], ["A cat was sitting."]), y=[1], epochs=4,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    )
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.RobertaTextClassifier
    _family = "RoBERTa"
