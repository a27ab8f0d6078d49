import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_text_classifier import family_class
from keras_addrop.train_step import with_addrop_arguments


@family_class
@keras_addrop_export("keras_addrop.models.ADDropAlbertTextClassifier")
@with_addrop_arguments
class ADDropAlbertTextClassifier(
    ADDropTextClassifier, keras_hub.models.AlbertTextClassifier
):
    """A keras-hub ALBERT classifier fine-tuned with AD-DROP.

    `keras_hub.models.AlbertTextClassifier` with its encoders'
    self-attention swapped for `keras_addrop.layers.ADDropAttention` (same
    weights) and AD-DROP's two-pass `train_step`. ALBERT shares one
    encoder between the transformer layers of a group, so one attention
    layer is called several times in a forward pass: AD-DROP works per
    call. `addrop_layers` counts transformer layers (calls, 0 the first;
    `num_layers` of them for one inner repetition), every call gets its own
    attribution and its own independently drawn keep mask, and
    `addrop_attention_calls` lists them as
    `keras_addrop.layers.AttentionCall`s. Otherwise it behaves as
    `keras_addrop.models.ADDropBertTextClassifier` does.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a `keras_hub.models.AlbertBackbone`.
        num_classes: int. Number of classes; 1 for regression.
        preprocessor: `None` or a
            `keras_hub.models.AlbertTextClassifierPreprocessor`.
        activation: as in `keras_hub.models.AlbertTextClassifier`.
        dropout: float. Dropout in the classification head. Defaults to
            `0.1`, as in keras-hub.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.AlbertTextClassifier`.

    Raises:
        ValueError: for an out-of-range or unknown AD-DROP argument.

    Example:

    ```python
    classifier = keras_addrop.models.ADDropTextClassifier.from_preset(
        "albert_base_en_uncased", num_classes=2, addrop_layers="all"
    )
    len(classifier.addrop_attention_calls)  # 12, from one shared layer
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.AlbertTextClassifier
    _family = "ALBERT"
