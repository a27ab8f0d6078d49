"""`--parts memory`: resident memory of a fresh process per model."""

import json
import os
import subprocess
import sys
import threading
import time

import keras_hub

import keras_addrop
from speed_parts.common import HERE
from speed_parts.common import batch
from speed_parts.common import compiled

KINDS = ("plain", "addrop_all_layers", "addrop_iga_first_layer")


def peak_memory(kind, length, batch_size):
    """Resident memory (MiB) of a fresh process: after building the model,
    and the peak while it runs 3 training steps (sampled every 5 ms)."""
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); "
        "from speed_parts import memory; "
        f"print(memory.memory_child({kind!r}, {length}, {batch_size}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1].replace("'", '"'))


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(kind, length, batch_size):

    preset = keras_addrop.models.minilm_l6_preset()
    x, y = batch(preset, batch_size, length)
    if kind == "plain":
        model = keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    elif kind == "addrop_iga_first_layer":
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            preprocessor=None,
            addrop_layers=(0,),
            attribution="integrated_gradients",
        )
    else:
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, addrop_layers="all"
        )
    compiled(model)
    model.predict_on_batch(x)  # Weights and the inference graph in place.
    baseline = resident_mib()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(3):
        model.train_on_batch(x, y)
    done.set()
    sampler.join()
    return {
        "after_build": baseline,
        "peak": peak[0],
        "step": peak[0] - baseline,
    }


def memory_entry(length, batch_size):
    """Every kind's memory, and each AD-DROP kind's over the plain one's."""
    memory = {kind: peak_memory(kind, length, batch_size) for kind in KINDS}
    return memory, {
        kind: {
            key: memory[kind][key] / memory["plain"][key]
            for key in ("peak", "step")
        }
        for kind in KINDS[1:]
    }
