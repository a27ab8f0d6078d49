import keras_hub
from keras import ops

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_text_classifier import family_class
from keras_addrop.train_step import with_addrop_arguments


@family_class
@keras_addrop_export("keras_addrop.models.ADDropRoformerV2TextClassifier")
@with_addrop_arguments
class ADDropRoformerV2TextClassifier(
    ADDropTextClassifier, keras_hub.models.RoformerV2TextClassifier
):
    """A keras-hub RoFormer-v2 classifier fine-tuned with AD-DROP.

    `keras_hub.models.RoformerV2TextClassifier` with every encoder's rotary
    attention swapped for `keras_addrop.layers.ADDropRoformerAttention`
    (same weights) and AD-DROP's two-pass `train_step`. The attention
    weights AD-DROP attributes and masks are the probabilities after the
    rotary step, which the stock layer's fused attention never exposes. As
    the backbone does, the classifier takes the tokens that are not the
    padding id 0 as the real ones. Otherwise it behaves as
    `keras_addrop.models.ADDropBertTextClassifier` does.

    LoRA needs the layer names: `classifier.backbone.enable_lora(rank,
    target_layer_names=["q_dense_layer", "v_dense_layer"])`; keras-hub's
    default names match no RoFormer-v2 layer, and `fit` refuses a backbone
    where `enable_lora` matched nothing.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a `keras_hub.models.RoformerV2Backbone`.
        num_classes: int. Number of classes; 1 for regression.
        preprocessor: `None` or a
            `keras_hub.models.RoformerV2TextClassifierPreprocessor`.
        activation: as in `keras_hub.models.RoformerV2TextClassifier`.
        hidden_dim: int. Size of the head's pooling layer; defaults to the
            backbone's hidden size.
        dropout: float. Dropout in the classification head.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.RoformerV2TextClassifier`.

    Raises:
        ValueError: for an out-of-range or unknown AD-DROP argument.

    Example:

    ```python
    # keras-hub registers no RoFormer-v2 preset names; local preset folders
    # load with `ADDropTextClassifier.from_preset(folder, ...)`.
    backbone = keras_hub.models.RoformerV2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, head_size=4,
    )
    classifier = keras_addrop.models.ADDropRoformerV2TextClassifier(
        backbone, num_classes=2, addrop_layers="all"
    )
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.RoformerV2TextClassifier
    _family = "RoFormer-v2"
    _lora_layer_names = ("q_dense_layer", "v_dense_layer")

    def _addrop_padding_mask(self, x):
        # The backbone's own rule; it takes no padding-mask input.
        return ops.not_equal(x["token_ids"], 0)
