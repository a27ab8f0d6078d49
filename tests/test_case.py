"""The shared test helper, in the spirit of keras-hub's `TestCase`."""

import contextlib
import copy
import json
import os
import pathlib
import shutil
import tempfile

import keras
import keras_hub
import numpy as np
from absl.testing import parameterized

from keras_addrop.models import minilm_l6_preset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The scripts tests run in fresh processes (another backend, devices).
SCRIPTS = REPO_ROOT / "tests" / "scripts"
GLUE_DIR = pathlib.Path(
    os.environ.get(
        "KERAS_ADDROP_GLUE_DIR", REPO_ROOT.parent / "shared/data/glue"
    )
)


def to_numpy(x, dtype=None):
    """A NumPy array of a tensor on any backend (PyTorch's detached)."""
    array = keras.ops.convert_to_numpy(x)
    return array if dtype is None else array.astype(dtype)


def minilm_path():
    """The MiniLM-L6 Hugging Face folder, or None if not installed."""
    return minilm_l6_preset()


def tiny_backbone(num_layers=2, num_heads=2, dropout=0.0, vocabulary_size=30):
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
        dropout=dropout,
    )


def twin_models(num_layers=2, dropout=0.0, **addrop_kwargs):
    """An AD-DROP classifier and a stock one with the same weights."""
    keras.utils.set_random_seed(0)
    from keras_addrop.models import ADDropBertTextClassifier

    ours = ADDropBertTextClassifier(
        tiny_backbone(num_layers=num_layers, dropout=dropout),
        num_classes=2,
        dropout=dropout,
        **addrop_kwargs,
    )
    stock = keras_hub.models.BertTextClassifier(
        tiny_backbone(num_layers=num_layers, dropout=dropout),
        num_classes=2,
        dropout=dropout,
    )
    stock.set_weights(ours.get_weights())
    return ours, stock


# Tiny random backbones of the keras-hub families (no pretrained weights
# for most of them exist offline).
FAMILY_BACKBONES = {
    "bert": keras_hub.models.BertBackbone,
    "roberta": keras_hub.models.RobertaBackbone,
    "distil_bert": keras_hub.models.DistilBertBackbone,
    "xlm_roberta": keras_hub.models.XLMRobertaBackbone,
    "deberta_v3": keras_hub.models.DebertaV3Backbone,
    "albert": keras_hub.models.AlbertBackbone,
    "roformer_v2": keras_hub.models.RoformerV2Backbone,
    "f_net": keras_hub.models.FNetBackbone,
}

# Each family's own backbone arguments. The ALBERT backbone shares one
# encoder between its two transformer layers.
_FAMILY_ARGUMENTS = {
    "deberta_v3": {"bucket_size": 6},
    "albert": {"embedding_dim": 8, "num_groups": 1},
    "roformer_v2": {"head_size": 4},
}


def tiny_family_backbone(family, dropout=0.1):
    """A tiny random backbone of a family (also "electra", which keras-hub
    has as a backbone only)."""
    extra = dict(_FAMILY_ARGUMENTS.get(family, {}))
    if family != "f_net":
        extra["num_heads"] = 2
    if family != "roformer_v2":
        extra["max_sequence_length"] = 12
    if family == "electra":
        return keras_hub.models.ElectraBackbone(
            vocab_size=20,
            num_layers=2,
            hidden_dim=8,
            embedding_dim=8,
            intermediate_dim=16,
            dropout=dropout,
            **extra,
        )
    return FAMILY_BACKBONES[family](
        vocabulary_size=20,
        num_layers=2,
        hidden_dim=8,
        intermediate_dim=16,
        dropout=dropout,
        **extra,
    )


def tiny_family_task(family, num_classes=3, dropout=0.1):
    """A tiny random stock classifier of a family, without preprocessor."""
    from keras_hub.src.utils import preset_utils

    backbone = tiny_family_backbone(family, dropout=dropout)
    stock_cls = preset_utils.find_subclass(
        "", keras_hub.models.TextClassifier, type(backbone)
    )
    return stock_cls(
        backbone, num_classes=num_classes, preprocessor=None, dropout=dropout
    )


# Tiny random decoder backbones of the causal-LM families: 2 layers,
# grouped-query attention where the family has it (4 query heads over 2
# key/value heads).
_GQA = {"num_query_heads": 4, "num_key_value_heads": 2}
_DECODER_ARGUMENTS = {
    "gpt2": (keras_hub.models.GPT2Backbone, {"num_heads": 2}),
    "opt": (keras_hub.models.OPTBackbone, {"num_heads": 2}),
    "llama": (keras_hub.models.LlamaBackbone, _GQA),
    "llama3": (keras_hub.models.Llama3Backbone, _GQA),
    "mistral": (keras_hub.models.MistralBackbone, _GQA),
    "mixtral": (keras_hub.models.MixtralBackbone, {**_GQA, "num_experts": 2}),
    "qwen": (keras_hub.models.QwenBackbone, _GQA),
    "qwen3": (keras_hub.models.Qwen3Backbone, {**_GQA, "head_dim": 4}),
    "phi3": (keras_hub.models.Phi3Backbone, _GQA),
    "smollm3": (
        keras_hub.models.SmolLM3Backbone,
        {
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "rope_layer_enabled_list": [True, False],
            "layer_types": ["attention", "attention"],
            "mlp_bias": False,
            "layer_norm_epsilon": 1e-6,
            "max_position_embeddings": 32,
            "rope_theta": 10000.0,
            "partial_rotary_factor": 1.0,
        },
    ),
    "gemma": (keras_hub.models.GemmaBackbone, {**_GQA, "head_dim": 4}),
    "gemma3": (
        keras_hub.models.Gemma3Backbone,
        {**_GQA, "head_dim": 4, "image_size": 16},
    ),
    "gpt_neo_x": (keras_hub.models.GPTNeoXBackbone, {"num_heads": 2}),
}
DECODER_FAMILIES = tuple(_DECODER_ARGUMENTS)
_WITH_MAX_LENGTH = ("gpt2", "opt", "gpt_neo_x")


def tiny_decoder_backbone(family, vocabulary_size=30):
    """A tiny random decoder backbone of a causal-LM family."""
    backbone_cls, extra = _DECODER_ARGUMENTS[family]
    if family in _WITH_MAX_LENGTH:
        extra = {**extra, "max_sequence_length": 16, "dropout": 0.0}
    return backbone_cls(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        **extra,
    )


def tiny_causal_lms(family, **addrop_kwargs):
    """`(AD-DROP causal LM, stock causal LM)` of a family, without
    preprocessors, with the same random weights."""
    from keras_addrop.models.addrop_causal_lm import FAMILIES

    ours_cls = next(
        cls
        for stock, cls in FAMILIES.items()
        if stock.backbone_cls is _DECODER_ARGUMENTS[family][0]
    )
    stock = ours_cls._stock_cls(
        backbone=tiny_decoder_backbone(family), preprocessor=None
    )
    ours = ours_cls(
        backbone=tiny_decoder_backbone(family),
        preprocessor=None,
        **addrop_kwargs,
    )
    ours.set_weights(stock.get_weights())
    return ours, stock


def causal_batch(batch_size=2, seq_len=8, vocabulary_size=30, seed=0):
    """Preprocessed causal-LM inputs (the last example right-padded),
    next-token labels, and sample weights with a prompt (weight 0) of
    2 tokens on the first example."""
    rng = np.random.default_rng(seed)
    lengths = np.full((batch_size, 1), seq_len)
    lengths[-1] = seq_len - 3
    padding_mask = np.arange(seq_len)[None, :] < lengths
    token_ids = rng.integers(1, vocabulary_size, (batch_size, seq_len))
    token_ids = token_ids * padding_mask
    x = {"token_ids": token_ids.astype("int32"), "padding_mask": padding_mask}
    y = np.concatenate([token_ids[:, 1:], np.zeros((batch_size, 1))], 1)
    weight = np.concatenate(
        [padding_mask[:, 1:], np.zeros((batch_size, 1), bool)], 1
    ).astype("float32")
    weight[0, :2] = 0.0
    return x, y.astype("int32"), weight


def tiny_bart_backbone(vocabulary_size=30):
    """A tiny random BART backbone (no dropout)."""
    return keras_hub.models.BartBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
        dropout=0.0,
    )


def tiny_seq2seq_lms(**addrop_kwargs):
    """`(AD-DROP BART seq2seq LM, stock BART seq2seq LM)`, without
    preprocessors, with the same random weights."""
    from keras_addrop.models import ADDropBartSeq2SeqLM

    stock = keras_hub.models.BartSeq2SeqLM(tiny_bart_backbone(), None)
    ours = ADDropBartSeq2SeqLM(tiny_bart_backbone(), None, **addrop_kwargs)
    ours.set_weights(stock.get_weights())
    return ours, stock


def seq2seq_batch(batch_size=4, source_length=7, target_length=6, seed=0):
    """Preprocessed BART inputs with padded sources and targets of several
    lengths, next-token labels, and their weights (0 on padding and on the
    last real position)."""
    rng = np.random.default_rng(seed)
    # The first pair unpadded; the others shorter, differently per side.
    cuts = np.arange(batch_size)[:, None]
    source = np.arange(source_length)[None] < source_length - cuts % 4
    target = np.arange(target_length)[None] < target_length - 2 * cuts % 5
    x = {
        "encoder_token_ids": rng.integers(3, 30, source.shape) * source,
        "encoder_padding_mask": source,
        "decoder_token_ids": rng.integers(3, 30, target.shape) * target,
        "decoder_padding_mask": target,
    }
    x = {k: v.astype("int32") if v.dtype != bool else v for k, v in x.items()}
    zeros = np.zeros((batch_size, 1), "int32")
    y = np.concatenate([x["decoder_token_ids"][:, 1:], zeros], 1)
    weights = np.concatenate([target[:, 1:], zeros.astype(bool)], 1)
    return x, y, weights.astype("float32")


def scaled_up_weights(model, seed=0):
    """`model` with every weight drawn from N(0, 0.5^2): larger than the
    initializers' 0.02, so that logits depend on the attention weights
    enough for a finite difference to measure."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model


def bfloat16_run(make_model, x, y, weights):
    """`make_model()` with scaled-up weights: its float32 attributions, and
    the same weights built under `mixed_bfloat16`, its attributions and the
    history of one epoch under it. Returns `(model, full, half, history)`,
    `model` the bfloat16 one."""
    from keras_addrop.attribution import compute_attribution

    keras.utils.set_random_seed(0)
    reference = scaled_up_weights(make_model(), seed=2)
    full = compute_attribution(reference, x, sample_weight=weights)
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = make_model()
        model.set_weights(reference.get_weights())
        half = compute_attribution(model, x, sample_weight=weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(x, y, sample_weight=weights, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, full, half, history


def output_difference(model, x, entries, index, position, read, epsilon=1e-2):
    """The central finite difference of `read(outputs)` (a float of the
    model's outputs as NumPy) in the attention weight at
    `position = (b, h, t, s)` of `entries[index]` (a layer or an
    `AttentionCall`), the other entries unchanged."""
    from keras_addrop.layers import addrop_scope
    from keras_addrop.layers.addrop_attention import CapturedAttention

    def value(delta):
        def nudge(entry_index, weights):
            if entry_index != index:
                return weights
            bump = np.zeros(weights.shape, "float32")
            bump[position] = delta
            return weights + keras.ops.convert_to_tensor(bump)

        captured = CapturedAttention(entries, transform=nudge)
        with addrop_scope(capture=captured.functions):
            return read(to_numpy(model(x)))

    return (value(epsilon) - value(-epsilon)) / (2 * epsilon)


def logit_difference(model, x, y, entries, index, position, epsilon=1e-2):
    """The finite difference of example `b`'s gold logit (`b` the first
    entry of `position`); see `output_difference`."""
    b = position[0]
    return output_difference(
        model,
        x,
        entries,
        index,
        position,
        lambda logits: float(logits[b, y[b]]),
        epsilon,
    )


def family_inputs(backbone):
    """Two examples (one padded) in the inputs the backbone takes."""
    padding = np.array([[1] * 10, [1] * 6 + [0] * 4], bool)
    x = {
        "token_ids": (np.arange(20).reshape(2, 10) % 17 + 3) * padding,
        "segment_ids": np.zeros((2, 10), "int32"),
        "padding_mask": padding,
    }
    return {k: v for k, v in x.items() if k in backbone.input}


def tiny_batch(batch_size=8, seq_len=10, vocabulary_size=30, seed=0):
    """Preprocessed BERT inputs with ragged real lengths, and labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, seq_len + 1, size=(batch_size, 1))
    lengths[0] = seq_len  # At least one example without padding.
    padding_mask = np.arange(seq_len)[None, :] < lengths
    token_ids = rng.integers(1, vocabulary_size, size=(batch_size, seq_len))
    x = {
        "token_ids": (token_ids * padding_mask).astype("int32"),
        "segment_ids": np.zeros((batch_size, seq_len), "int32"),
        "padding_mask": padding_mask,
    }
    y = rng.integers(0, 2, size=(batch_size,)).astype("int32")
    return x, y


TAG_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def tiny_token_batch(batch_size=16, seq_len=10, seed=0):
    """`tiny_batch`'s inputs with a tag per token and weights: about 70%
    of the real tokens start a word (weight 1)."""
    x, _ = tiny_batch(batch_size=batch_size, seq_len=seq_len, seed=seed)
    rng = np.random.default_rng(seed + 1)
    tags = rng.integers(0, len(TAG_NAMES), size=(batch_size, seq_len))
    first = (rng.random((batch_size, seq_len)) < 0.7) & x["padding_mask"]
    return x, tags.astype("int32"), first.astype("float32")


def deterministic_tagger(**compile_kwargs):
    """`deterministic_model`'s token classifier (tags `TAG_NAMES`), compiled
    with its default metrics (entity F1 among them)."""
    from keras_addrop.models import ADDropTokenClassifier

    keras.utils.set_random_seed(0)
    model = ADDropTokenClassifier(
        tiny_backbone(dropout=0.0),
        num_classes=len(TAG_NAMES),
        dropout=0.0,
        tag_names=TAG_NAMES,
        addrop_layers="all",
        candidate_ratio=0.5,
        drop_rate=1.0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), **compile_kwargs)
    return model


def fit_tagger_cross_tuned(model, x, tags, weights):
    """Two cross-tuned epochs (plain, AD-DROP) of batches of 8, the same
    batch as validation data; the history."""
    from keras_addrop.callbacks import CrossTuning

    return model.fit(
        x,
        tags,
        sample_weight=weights,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        validation_data=(x, tags, weights),
        callbacks=[CrossTuning()],
    ).history


def backend_pair_model():
    """The AD-DROP classifier the cross-backend tests build on each backend:
    no dropout, every layer, every candidate dropped (q = 1)."""
    from keras_addrop.models import ADDropBertTextClassifier

    return ADDropBertTextClassifier(
        tiny_backbone(num_layers=2, dropout=0.0),
        num_classes=3,
        dropout=0.0,
        addrop_layers="all",
        candidate_ratio=0.3,
        drop_rate=1.0,
    )


def deterministic_model(dropout=0.0, **compile_kwargs):
    """An AD-DROP classifier whose steps are functions of the weights with
    `dropout=0`: every layer, q = 1. Adam at 1e-2."""
    from keras_addrop.models import ADDropBertTextClassifier

    keras.utils.set_random_seed(0)
    model = ADDropBertTextClassifier(
        tiny_backbone(dropout=dropout),
        num_classes=2,
        dropout=dropout,
        addrop_layers="all",
        candidate_ratio=0.5,
        drop_rate=1.0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **compile_kwargs,
    )
    return model


def dense_gradient_step(model, x, y, optimizer):
    """One step of `model` whose embedding gradients are made dense.

    The reference for the update Keras' optimizers should give a sparse
    (`tf.IndexedSlices`) embedding gradient. Returns the loss.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
    gradients = tape.gradient(loss, model.trainable_weights)
    optimizer.apply(
        [
            tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
            for g in gradients
        ],
        model.trainable_weights,
    )
    return loss


def differences_from_keras_step(
    x, y, strategy=None, policy="float32", loss_scale=False
):
    """The largest differences between the AD-DROP classifier's plain step
    and Keras' own `train_step` on the stock keras-hub classifier.

    Both start from the same weights and fit the same weighted batches
    (4 steps: loss, weighted and unweighted accuracy) under `strategy` and
    dtype `policy`, with a `LossScaleOptimizer` if `loss_scale` (Keras' own
    choice under `"mixed_float16"`). The AD-DROP model
    keeps Keras' update of repeated embedding rows
    (`merge_repeated_rows=False`), so the two steps should agree to
    rounding. Returns a JSON-able dict: the logs' names, and the largest
    absolute differences of every log, the weights, the optimizer's
    variables (its step count, moments and loss scale).
    """
    import keras_hub

    from keras_addrop.models import ADDropBertTextClassifier

    scope = strategy.scope if strategy else contextlib.nullcontext
    keras.mixed_precision.set_global_policy(policy)
    sample_weight = np.linspace(0.5, 1.5, len(y)).astype("float32")
    models = []
    for cls, kwargs in (
        (keras_hub.models.BertTextClassifier, {}),
        (ADDropBertTextClassifier, {"merge_repeated_rows": False}),
    ):
        with scope():
            keras.utils.set_random_seed(0)
            model = cls(
                tiny_backbone(dropout=0.0),
                num_classes=2,
                dropout=0.0,
                **kwargs,
            )
            optimizer = keras.optimizers.Adam(1e-2)
            if loss_scale and policy != "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                metrics=["sparse_categorical_accuracy"],
                weighted_metrics=["sparse_categorical_accuracy"],
            )
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    models[1].addrop_enabled = False
    histories = [
        model.fit(
            x,
            y,
            sample_weight=sample_weight,
            batch_size=8,
            epochs=2,
            shuffle=False,
            verbose=0,
        ).history
        for model in models
    ]
    keras.mixed_precision.set_global_policy("float32")
    stock, ours = models

    def largest(pairs):
        return max(
            float(np.max(np.abs(to_numpy(a, "float64") - to_numpy(b))))
            for a, b in pairs
        )

    return {
        "stock_logs": sorted(histories[0]),
        "addrop_logs": sorted(histories[1]),
        "logs": largest(
            (histories[0][key], histories[1][key]) for key in histories[0]
        ),
        "weights": largest(zip(stock.weights, ours.weights, strict=True)),
        "optimizer": largest(
            zip(
                stock.optimizer.variables,
                ours.optimizer.variables,
                strict=True,
            )
        ),
        "optimizer_variables": len(ours.optimizer.variables),
        "loss_scaled": isinstance(
            ours.optimizer, keras.optimizers.LossScaleOptimizer
        ),
    }


def compile_for_test(model, learning_rate=1e-2, **kwargs):
    """Adam, sparse cross-entropy on logits, accuracy; `kwargs` to compile."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
        **kwargs,
    )
    return model


class TestCase(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        keras.config.disable_traceback_filtering()
        keras.mixed_precision.set_global_policy("float32")
        keras.utils.clear_session()

    def tearDown(self):
        keras.mixed_precision.set_global_policy("float32")
        super().tearDown()

    def get_temp_dir(self):
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def assertAllClose(self, x1, x2, atol=1e-6, rtol=1e-6, msg=None):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(x1),
            keras.ops.convert_to_numpy(x2),
            atol=atol,
            rtol=rtol,
            err_msg=msg or "",
        )

    def assertAllEqual(self, x1, x2, msg=None):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(x1),
            keras.ops.convert_to_numpy(x2),
            err_msg=msg or "",
        )

    def assertIsKerasStep(self, report, loss_scaled, atol=1e-6):
        """`report` of `differences_from_keras_step`: the same logs (and
        the drop fraction), the loss scaled or not, and every difference
        within `atol`."""
        self.assertEqual(
            report["addrop_logs"],
            sorted(report["stock_logs"] + ["addrop_drop_fraction"]),
        )
        self.assertEqual(report["loss_scaled"], loss_scaled)
        for part in ("logs", "weights", "optimizer"):
            self.assertLessEqual(report[part], atol, msg=part)

    def assertAttributionIsAFiniteDifference(
        self, model, x, y, entries, positions, attribution=None
    ):
        """Gradient attribution (gold labels) of `entries` (layers or
        `AttentionCall`s) equals, at each `(index, position)` of
        `positions`, the finite difference of the gold logit in that entry's
        attention weight. `attribution` defaults to `compute_attribution`
        of `entries`."""
        from keras_addrop.attribution import compute_attribution

        if attribution is None:
            attribution = compute_attribution(
                model, x, y=y, layers=entries, labels="gold"
            )
        for index, position in positions:
            difference = logit_difference(model, x, y, entries, index, position)
            self.assertIsFiniteDifference(
                to_numpy(attribution[index])[position], difference
            )

    def assertIsFiniteDifference(self, gradient, difference):
        """A gradient equals its central finite difference, which is not 0."""
        # A position the output does not depend on would prove nothing.
        self.assertGreater(abs(difference), 1e-4)
        self.assertAllClose(gradient, difference, atol=2e-5, rtol=2e-2)

    def assertWeightsClose(self, model1, model2, atol=1e-6):
        for w1, w2 in zip(model1.weights, model2.weights, strict=True):
            self.assertAllClose(w1, w2, atol=atol, rtol=0, msg=w1.path)

    def run_serialization_test(self, instance):
        """`get_config`/`from_config` and `serialize`/`deserialize`."""
        cls = instance.__class__
        config = instance.get_config()
        # keras-hub's `Task.from_config` deserializes nested objects in place.
        revived = cls.from_config(copy.deepcopy(config))
        self.assertEqual(
            json.dumps(config, sort_keys=True, default=str),
            json.dumps(revived.get_config(), sort_keys=True, default=str),
        )
        serialized = keras.saving.serialize_keras_object(instance)
        self.assertIn("keras_addrop", serialized["registered_name"])
        revived = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(revived, cls)
        self.assertEqual(
            json.dumps(config, sort_keys=True, default=str),
            json.dumps(revived.get_config(), sort_keys=True, default=str),
        )
        return revived

    def run_layer_test(
        self,
        cls,
        init_kwargs,
        input_data,
        expected_output_shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0,
        call_kwargs=None,
        run_training_check=True,
        run_precision_checks=True,
    ):
        """Serialization, build, symbolic, eager, fit and precision checks.

        `input_data` is a dict of call arguments (e.g. `query`, `value`).
        """
        call_kwargs = call_kwargs or {}
        self.run_serialization_test(cls(**init_kwargs))

        # Build, symbolic call and weight counts.
        layer = cls(**init_kwargs)
        symbolic = {
            k: keras.KerasTensor(v.shape, dtype=str(v.dtype))
            for k, v in input_data.items()
        }
        output = layer(**symbolic, **call_kwargs)
        self.assertEqual(tuple(output.shape), expected_output_shape)
        self.assertEqual(output.dtype, layer.compute_dtype)
        self.assertLen(layer.trainable_weights, expected_num_trainable_weights)
        self.assertLen(
            layer.non_trainable_weights, expected_num_non_trainable_weights
        )
        seed_generators = [
            sub._seed_generators
            for sub in layer._flatten_layers(include_self=True)
        ]
        self.assertEqual(
            sum(len(s) for s in seed_generators), expected_num_seed_generators
        )

        # Eager call, in both modes.
        layer = cls(**init_kwargs)
        for training in (False, True):
            output = layer(**input_data, **call_kwargs, training=training)
            self.assertEqual(tuple(output.shape), expected_output_shape)
            self.assertTrue(np.all(np.isfinite(to_numpy(output))))

        if run_training_check:
            inputs = {
                k: keras.Input(v.shape[1:], dtype=str(v.dtype), name=k)
                for k, v in input_data.items()
            }
            model = keras.Model(
                inputs, cls(**init_kwargs)(**inputs, **call_kwargs)
            )
            model.compile(optimizer="sgd", loss="mse", jit_compile=True)
            target = np.zeros(expected_output_shape, "float32")
            history = model.fit(input_data, target, epochs=1, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))

        if run_precision_checks:
            for policy in ("mixed_float16", "mixed_bfloat16", "bfloat16"):
                layer = cls(**init_kwargs, dtype=policy)
                output = layer(**input_data, **call_kwargs)
                self.assertEqual(
                    keras.backend.standardize_dtype(output.dtype),
                    layer.compute_dtype,
                )
                for weight in layer.weights:
                    self.assertEqual(weight.dtype, layer.variable_dtype)
                for sub in layer._flatten_layers():
                    self.assertEqual(
                        sub.dtype_policy.name, layer.dtype_policy.name
                    )

    def run_model_saving_test(self, model, input_data, safe_mode=True):
        """`.keras` save and load give the same class and predictions."""
        path = os.path.join(self.get_temp_dir(), "model.keras")
        expected = model.predict(input_data, verbose=0)
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=safe_mode)
        self.assertIsInstance(restored, model.__class__)
        self.assertAllClose(restored.predict(input_data, verbose=0), expected)
        return restored
