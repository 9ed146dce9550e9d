"""A/B of AMD's step floor s_min on the table-1 protocol (MNIST/Fashion, one seed, GFE-amd only).

Mirrors experiments.train(): chunks of 250 images drawn with replacement, batch 5, RMSprop,
fit_stop_tol 1e-6, test BCE on the fixed 1,000-image subset at 480..5760 images. Counts the
decoder evaluations of the training flows (deterministic, unlike seconds on a shared machine).

Run from the repository root (it imports the experiments package):

    GFE_SKLEARN_DATA=../shared/data OMP_NUM_THREADS=1 \
        python docs/results/s-min/ab_smin.py mnist 0 mnist-0.json        # s_min = 0
    ... ab_smin.py mnist none mnist-none.json                               # papers' floor
    ... ab_smin.py fashion-mnist 0 fashion-0.json
"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import gfe_sklearn._gradient_flow as G
sys.path.insert(0, ".")
from experiments._models import make_model
from experiments._training import load_dataset, subset, draw_stream
from argparse import Namespace

dataset, s_min, out = sys.argv[1], (None if sys.argv[2] == "none" else float(sys.argv[2])), sys.argv[3]
counter = {"evals": 0, "on": False}
_encode = G.encode
def counting(*a, **k):
    r = _encode(*a, **k)
    if counter["on"]:
        counter["evals"] += int(r.n_evals.sum())
    return r
G.encode = counting
args = Namespace(n_components=20, hidden=[150, 300, 600], optimizer="rmsprop", learning_rate=5e-4,
                 batch_size=5, device="cpu", tau=None, fit_stop_tol=1e-6, threads=1)
data = load_dataset(dataset)
X_test, _ = subset(data.X_test, data.y_test, 1000)
model = make_model("gfe", args, 0, s_min=s_min)
stream = draw_stream(data, 0)
seen, seconds, rows = 0, 0.0, []
for budget in (480, 960, 1920, 3840, 5760):
    while seen < budget:
        images = data.X_train[stream.take(min(250, budget - seen))]
        counter["on"] = True
        t0 = time.perf_counter(); model.partial_fit(images); seconds += time.perf_counter() - t0
        counter["on"] = False
        seen += len(images)
    bce = -float(model.score(X_test))
    rows.append({"images": seen, "test_bce": bce, "train_evals": counter["evals"], "train_seconds": seconds})
    print(json.dumps({"dataset": dataset, "s_min": s_min, **rows[-1]}), flush=True)
json.dump({"dataset": dataset, "s_min": s_min, "rows": rows}, open(out, "w"), indent=1)
