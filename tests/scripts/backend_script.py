"""Run by `backends_test.py` in a fresh process, under the backend that
`KERAS_BACKEND` names: the same weights and inputs on every backend.

Usage: python backend_script.py FOLDER. Reads FOLDER/initial.weights.h5 and
FOLDER/model.keras (written under TensorFlow), writes FOLDER/BACKEND.npz
(GA attributions, keep masks, the loss, drop fraction and weights after one
AD-DROP step, the reloaded `.keras` model's predictions, a tiny BART's Adam
state after a step, by variable path), FOLDER/BACKEND.keras (the model
after the step) and FOLDER/BACKEND_bart.keras (the BART after its step).
"""

import os
import pathlib
import sys

# The repository root, for `tests.test_case` and the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_addrop  # noqa: E402
from tests.test_case import backend_pair_model  # noqa: E402
from tests.test_case import seq2seq_batch  # noqa: E402
from tests.test_case import tiny_bart_backbone  # noqa: E402
from tests.test_case import tiny_batch  # noqa: E402

folder = sys.argv[1]
name = keras.config.backend()
x, y = tiny_batch(batch_size=6, seq_len=10)
results = {}

reloaded = keras.saving.load_model(os.path.join(folder, "model.keras"))
results["reloaded_predictions"] = reloaded.predict(x, verbose=0)

model = backend_pair_model()
model.load_weights(os.path.join(folder, "initial.weights.h5"))
attributions = keras_addrop.attribution.compute_attribution(model, x)
for i, attribution in enumerate(attributions):
    results[f"attribution_{i}"] = keras.ops.convert_to_numpy(attribution)
layers = model.addrop_attention_layers
padding_mask = keras.ops.convert_to_tensor(x["padding_mask"])
# With q = 1 every candidate is dropped: the masks have no randomness.
for i, attribution in enumerate(attributions):
    results[f"keep_{i}"] = keras.ops.convert_to_numpy(
        keras_addrop.ops.addrop_mask(attribution, padding_mask, 0.3, 1.0)
    )

model.compile(
    optimizer=keras.optimizers.SGD(0.5),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
results["loss"] = np.array(history.history["loss"][0])
results["drop_fraction"] = np.array(history.history["addrop_drop_fraction"][0])
for i, weight in enumerate(model.weights):
    results[f"weight_{i}"] = keras.ops.convert_to_numpy(weight)
results["predictions"] = model.predict(x, verbose=0)
model.save(os.path.join(folder, f"{name}.keras"))

# Keras lists BART's variables in another order on PyTorch than on
# TensorFlow and JAX; its saved Adam state must still reach the right ones.
bart = keras_addrop.models.ADDropBartSeq2SeqLM(tiny_bart_backbone(), None)
bart.compile(optimizer=keras.optimizers.Adam(1e-2))
bart_x, bart_y, bart_weights = seq2seq_batch()
bart.fit(bart_x, bart_y, sample_weight=bart_weights, epochs=1, verbose=0)
for variable in bart.optimizer.variables:
    results[f"bart_optimizer/{variable.path}"] = keras.ops.convert_to_numpy(
        variable
    )
bart.save(os.path.join(folder, f"{name}_bart.keras"))
np.savez(os.path.join(folder, f"{name}.npz"), **results)
