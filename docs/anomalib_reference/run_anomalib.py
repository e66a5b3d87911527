"""anomalib 2.7 PatchCore with the shared MobileNetV2 weights on one MVTec-layout category.

Usage: SEED=0 python run_anomalib.py ROOT CATEGORY OUT_PREFIX TIMM_WEIGHTS.pth [fast]

The issue's protocol: resize 256 to a square, center crop 224, coreset 0.1, b = 9, taps blocks.2 +
blocks.4 (= torchvision features.6 + features.13).  Writes OUT_PREFIX.json (anomalib's own test
metrics) and OUT_PREFIX.npz: the raw anomaly maps and scores (taken before anomalib's
post-processor normalises them), the masks in the frame, labels, paths and the memory bank.
Score them with score_maps.py.

``fast`` replaces the loop of KCenterGreedy.select_coreset_idxs (same sparse random projection,
same random start, same greedy rule) with Inspector's triangle-inequality kernel, run from this
checkout: magnetic_tile's 60k picks then take 16 minutes instead of hours.  On synthetic data the
two loops pick the same rows until float rounding splits a near tie (576 of 800 picks).
SEED seeds torch (the start); anomalib's projection draws from numpy's unseeded generator, so
runs with one SEED still differ."""
import json, sys, time, numpy as np, torch
from lightning.pytorch.callbacks import Callback
import anomalib.data.datasets.image.mvtecad as mv
mv.IMG_EXTENSIONS = (".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".bmp")
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from anomalib.models import Patchcore

root, cat, out, timm_weights = sys.argv[1:5]
fast = len(sys.argv) > 5 and sys.argv[5] == "fast"
SEED = int(__import__("os").environ.get("SEED", "0")); torch.manual_seed(SEED)

if fast:
    # Same projection (anomalib's SparseRandomProjection, eps 0.9), same random start, same greedy
    # k-center rule; the loop is Inspector's triangle-inequality kernel (exact up to float rounding).
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    from inspector.core.coreset import greedy_kcenter
    from anomalib.models.components.sampling import k_center_greedy as kc

    def select_coreset_idxs(self):
        self.model.fit(self.embedding)
        feats = self.model.transform(self.embedding).contiguous()
        start = int(torch.randint(high=self.n_observations, size=(1,)).item())
        print("coreset: projected", tuple(feats.shape), "start", start, "k", self.coreset_size, flush=True)
        t = time.time()
        picks = greedy_kcenter(feats.numpy(), self.coreset_size, start)
        print("coreset seconds", time.time() - t, flush=True)
        return [int(i) for i in picks]
    kc.KCenterGreedy.select_coreset_idxs = select_coreset_idxs

class Grab(Callback):
    def __init__(self):
        self.maps, self.masks, self.scores, self.labels, self.paths = [], [], [], [], []
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.maps.append(outputs.anomaly_map.detach().cpu().squeeze(1).numpy().copy())
        self.masks.append(outputs.gt_mask.detach().cpu().numpy().astype(bool).reshape(self.maps[-1].shape))
        self.scores.append(outputs.pred_score.detach().cpu().numpy().copy())
        self.labels.append(outputs.gt_label.detach().cpu().numpy().copy())
        self.paths += list(outputs.image_path)

dm = MVTecAD(root=root, category=cat, train_batch_size=32, eval_batch_size=32, num_workers=0)
model = Patchcore(backbone="mobilenetv2_100", layers=["blocks.2", "blocks.4"], pre_trained=False,
                  coreset_sampling_ratio=0.1, num_neighbors=9,
                  pre_processor=Patchcore.configure_pre_processor(image_size=(256, 256), center_crop_size=(224, 224)))
fe = model.model.feature_extractor.feature_extractor
sd = torch.load(timm_weights, weights_only=True)
res = fe.load_state_dict({k: v for k, v in sd.items() if k in fe.state_dict()}, strict=True)
print("weights loaded", res)
grab = Grab()
engine = Engine(accelerator="cpu", devices=1, callbacks=[grab], default_root_dir=f"/tmp/ano/work_{cat}",
                logger=False)
t0 = time.time(); engine.fit(model=model, datamodule=dm); t_fit = time.time() - t0
grab.__init__()  # drop anything captured during fit's validation
t0 = time.time(); metrics = engine.test(model=model, datamodule=dm); t_test = time.time() - t0
print(metrics, t_fit, t_test)
json.dump({"metrics": metrics, "fit_s": t_fit, "test_s": t_test, "fast": fast}, open(out + ".json", "w"), indent=1)
np.savez_compressed(out + ".npz", maps=np.concatenate(grab.maps), masks=np.concatenate(grab.masks),
                    scores=np.concatenate(grab.scores), labels=np.concatenate(grab.labels), paths=np.array(grab.paths),
                    bank=model.model.memory_bank.detach().cpu().numpy())
