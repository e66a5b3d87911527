"""APC on generated 64×64 textures with painted defects: network shapes, loss, sampler,
augmentation, a training step, end-to-end training, save/load, errors and cancellation."""

import math

import cv2
import numpy as np
import pytest
import torch

from helpers import assert_same_predictions, texture, with_defect, write_rgb
from inspector.core.methods.apc.net import (APCNet, APCOutput, Augment, BalancedBatchSampler, Encoder, apc_loss,
                                    soft_dice)
from inspector.core.backbones import get_spec, load_backbone_module
from inspector.core.datasets import load_mvtec_category
from inspector.core.errors import InspectorError, ModelFileError
from inspector.research.evaluation import evaluate_category
from inspector.core.images import list_images
from inspector.core.jobs import Cancelled, CancelToken, Job
from inspector.core.methods import get_method, method_names
from inspector.core.methods.apc import APCModel, APCOptions
from inspector.core.modelfile import load_model, read_metadata, save_model
from inspector.core.preprocess import Preprocess
from inspector.core.pipeline.training import TrainSettings, train_model

FAST_OPTIONS = {"coreset_ratio": 0.5, "epochs": 2}


def fast_settings(anomalies, **options):
    return TrainSettings(method="apc", backbone="resnet18", random_weights=True, resize=64,
                         options={**FAST_OPTIONS, **options}, anomalies=anomalies)


def _write_anomalies(tmp_path):
    out = []
    for i in range(3):
        img, mask = with_defect(texture(300 + i), seed=i)
        p = write_rgb(tmp_path / "bad" / f"{i:03d}.png", img)
        mp = None
        if i < 2:
            mp = tmp_path / "bad" / f"{i:03d}_mask.png"
            cv2.imwrite(str(mp), mask.astype(np.uint8) * 255)
        out.append((p, mp))
    return out


@pytest.fixture
def anomalies(tmp_path):
    """Three labelled defects: two with masks, one without."""
    return _write_anomalies(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One APC model for the tests that only read it (training is the slow part); its progress
    reports are in ``trained.stages``."""
    root = tmp_path_factory.mktemp("apc")
    goods = [write_rgb(root / "good" / f"{i:03d}.png", texture(i)) for i in range(12)]
    stages = []
    result = train_model(goods, fast_settings(_write_anomalies(root)), Job(lambda s, d, t: stages.append((s, d, t))))
    result.stages = stages
    return result


def _net(name, skips=2, freeze_stride=4, width=8, seed=0):
    module, _ = load_backbone_module(name, random_weights=True, seed=seed)
    torch.manual_seed(seed)
    return APCNet(Encoder(module, get_spec(name), skips, freeze_stride), width)


# -- network ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,skips", [("resnet18", 2), ("resnet18", 4), ("mobilenet_v2", 2),
                                        ("mobilenet_v2", 4), ("resnet50", 2), ("wide_resnet50_2", 2)])
def test_decoder_output_shapes(name, skips):
    net = _net(name, skips).eval()
    spec = get_spec(name)
    with torch.no_grad():
        for size in (64, 72):   # 72: not a multiple of 16, the decoder still returns the input size
            out = net(torch.randn(2, 3, size, size))
            assert out.cls.shape == (2,)
            assert out.seg.shape == (2, size, size)
            assert out.rec.shape == (2, 3, size, size)
    enc = net.encoder
    assert enc.deepest == (16 if skips == 2 else 32)
    assert enc.skip_strides == ((4, 8) if skips == 2 else (2, 4, 8, 16))
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 64, 64))
    for s in enc.strides:
        assert feats[s].shape[1] == enc.channels[s] and feats[s].shape[-1] == 64 // s
        if s in spec.taps:
            assert enc.channels[s] == spec.channels[s]
    n_skips = sum(1 for k in net.stage_skips if k)
    assert n_skips == skips


def test_freezing_covers_stem_and_first_stage_only():
    net = _net("resnet18", freeze_stride=4)
    frozen = {n for n, p in net.encoder.body.named_parameters() if not p.requires_grad}
    assert "conv1.weight" in frozen and "layer1.1.conv2.weight" in frozen
    assert not any(n.startswith(("layer2", "layer3")) for n in frozen)
    assert not all(p.requires_grad for p in net.encoder.body.parameters())
    net = _net("mobilenet_v2", freeze_stride=4)
    frozen = {n for n, p in net.encoder.body.named_parameters() if not p.requires_grad}
    assert any(n.startswith("features.3.") for n in frozen)
    assert not any(n.startswith("features.4.") for n in frozen)
    net = _net("resnet18", freeze_stride=0)
    assert all(p.requires_grad for p in net.encoder.body.parameters())
    # BatchNorm of the encoder stays in eval mode while training (train_bn False)
    net.train()
    assert not net.encoder.body.bn1.training and net.stages[0].mix[1].training


# -- loss ---------------------------------------------------------------------------------------

def test_loss_combines_three_terms_with_weights():
    g = torch.Generator().manual_seed(0)
    b, s = 4, 16
    out = APCOutput(torch.randn(b, generator=g), torch.randn(b, s, s, generator=g), torch.randn(b, 3, s, s, generator=g))
    x = torch.randn(b, 3, s, s, generator=g)
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    masks = torch.zeros(b, s, s)
    masks[2, 4:8, 4:8] = 1
    masks[3, :, :] = 1               # garbage: this sample has no mask, it must not count
    valid = torch.tensor([True, True, True, False])

    terms = apc_loss(out, x, labels, masks, valid, w_cls=10.0, w_seg=1.0, w_rec=1.0)
    # by hand
    p = torch.sigmoid(out.cls)
    l_cls = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    q = torch.sigmoid(out.seg[:3])
    t = masks[:3]
    l_seg = -(t * torch.log(q) + (1 - t) * torch.log(1 - q)).mean()
    l_rec = ((out.rec - x) ** 2).mean()
    assert torch.allclose(terms.cls, l_cls, atol=1e-5)
    assert torch.allclose(terms.seg, l_seg, atol=1e-5)
    assert torch.allclose(terms.rec, l_rec, atol=1e-5)
    assert torch.allclose(terms.total, 10 * l_cls + l_seg + l_rec, atol=1e-4)

    other = apc_loss(out, x, labels, masks, valid, w_cls=2.0, w_seg=3.0, w_rec=0.5)
    assert torch.allclose(other.total, 2 * l_cls + 3 * l_seg + 0.5 * l_rec, atol=1e-4)

    dice = apc_loss(out, x, labels, masks, valid, seg_loss="bce+dice")
    assert torch.allclose(dice.seg, l_seg + soft_dice(out.seg[:3], t).mean(), atol=1e-5)

    # no sample with a known mask: L_seg is zero (and still differentiable)
    none = apc_loss(out, x, labels, masks, torch.zeros(b, dtype=torch.bool))
    assert float(none.seg) == 0.0
    assert torch.allclose(none.total, 10 * l_cls + l_rec, atol=1e-4)


# -- sampler ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_normal,n_anom,batch,frac", [(200, 10, 8, 0.25), (13, 1, 4, 0.1), (5, 3, 2, 0.9),
                                                        (50, 7, 16, 0.3)])
def test_sampler_always_includes_anomalous_images(n_normal, n_anom, batch, frac):
    sampler = BalancedBatchSampler(n_normal, n_anom, batch, frac, seed=1)
    k = min(batch - 1, max(1, math.ceil(batch * frac)))
    for _ in range(3):   # epochs
        seen_normal, seen_anom = [], []
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for normal, anom in batches:
            assert len(anom) == k >= 1
            assert 1 <= len(normal) and len(normal) + len(anom) <= batch
            assert all(0 <= a < n_anom for a in anom)
            seen_normal += normal.tolist()
            seen_anom += anom.tolist()
        assert sorted(seen_normal) == list(range(n_normal))      # every normal image once per epoch
        counts = np.bincount(seen_anom, minlength=n_anom)
        assert counts.max() - counts.min() <= k + 1                # anomalies seen about equally often


# -- augmentation -------------------------------------------------------------------------------

def test_augmentation_moves_image_and_mask_together():
    pre = Preprocess(64)
    imgs, masks = [], []
    for i in range(6):
        img, m = with_defect(np.full((64, 64, 3), 128, np.uint8), seed=i, radius=8)
        imgs.append(img)
        masks.append(m)
    x = torch.from_numpy(pre.normalise(imgs))
    m = torch.from_numpy(np.stack(masks))
    aug = Augment(brightness=0.0, contrast=0.0, degrees=15, shift=0.1)
    xa, ma = aug(x, m, torch.Generator().manual_seed(3))
    assert xa.shape == x.shape and ma.shape == m.shape
    assert set(np.unique(ma.numpy())) <= {0.0, 1.0}
    # the blob is green: where the augmented image is green, the augmented mask must be set
    green = (xa[:, 1] - xa[:, 0]) > 1.0
    agree = (green == (ma > 0.5)).float().mean(dim=(1, 2))
    assert float(agree.min()) > 0.98
    assert not torch.equal(ma, m.float())   # something moved
    # photometric jitter keeps the geometry and the range
    xb, mb = Augment(hflip=False, vflip=False, degrees=0, shift=0, brightness=0.2, contrast=0.2)(
        x, m, torch.Generator().manual_seed(4))
    assert torch.equal(mb, m.float())
    assert not torch.allclose(xb, x)


# -- training -----------------------------------------------------------------------------------

def test_training_steps_lower_the_loss():
    pre = Preprocess(64)
    normal = [texture(i) for i in range(6)]
    bad = [with_defect(texture(100 + i), seed=i) for i in range(2)]
    x = torch.from_numpy(pre.normalise(normal + [b[0] for b in bad]))
    masks = torch.from_numpy(np.stack([np.zeros((64, 64), bool)] * 6 + [b[1] for b in bad]))
    labels = torch.tensor([0.0] * 6 + [1.0] * 2)
    valid = torch.ones(8, dtype=torch.bool)
    net = _net("resnet18", seed=0).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        terms = apc_loss(net(x), x, labels, masks, valid)
        losses.append(terms.total.item())
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    with torch.no_grad():
        net.eval()
        final = float(apc_loss(net(x), x, labels, masks, valid).total)
    assert losses[-1] < losses[0] and final < losses[0]


def test_train_score_and_progress(trained):
    stages = trained.stages
    model = trained.model
    assert isinstance(model, APCModel) and model.method == "apc"
    # progress per batch over all epochs (12 normal images, 6 a batch: 2 batches, 2 epochs)
    tuning = [s for s in stages if s[0].startswith("fine-tuning")]
    assert [(d, t) for _, d, t in tuning] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert "epoch 1 of 2" in tuning[2][0] and "epoch 2 of 2" in tuning[3][0]
    assert "cls" in tuning[1][0] and "seg" in tuning[1][0] and "rec" in tuning[1][0]
    assert any(s[0] == "extracting features" for s in stages)
    # 12 normal images: thresholds by cross-fit, each fold rebuilding only the bank on the
    # encoder tuned once (fine-tuning per fold would multiply the training time)
    assert model.meta["training"]["calibration"] == {"rule": "cross-fit", "folds": 5, "n_scored": 12}
    assert trained.n_train == 12 and np.isfinite(model.image_threshold.value)
    folds = [s[0] for s in stages if s[0].startswith("thresholds, fold")]
    assert any("5 of 5: coreset" in f for f in folds) and not any("fine-tuning" in f for f in folds)
    info = model.apc_options
    assert info["n_anomalous"] == 3 and info["n_with_mask"] == 2 and len(info["losses"]) == 2
    assert info["options"]["w_cls"] == 10.0 and model.options.coreset_ratio == 0.5
    normal = [texture(50 + i) for i in range(2)]
    defects = [with_defect(texture(60 + i), seed=i)[0] for i in range(2)]
    preds = model.predict(normal + defects)
    assert all(np.isfinite(p.score) for p in preds) and preds[0].anomaly_map.shape == (64, 64)
    assert np.isfinite(model.image_threshold.value)


def test_every_stage_reported_is_in_the_plan_in_order(trained):
    from inspector.core.progress import ProgressMeter, settings_plan, stage_key
    plan = settings_plan(fast_settings([None] * 3), 12)
    keys = [s.key for s in plan]
    order = [keys.index(stage_key(s)) for s, _, _ in trained.stages]    # ValueError: not planned
    assert order == sorted(order) and order[-1] == len(keys) - 1
    meter = ProgressMeter(plan, clock=lambda: 0.0)
    seen = []
    for report in trained.stages:
        meter.update(*report)
        seen.append(meter.overall)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_fine_tuning_changes_trainable_encoder_weights_only(trained):
    base, _ = load_backbone_module("resnet18", random_weights=True, seed=0)
    base_sd = base.state_dict()
    tuned = trained.model.extractor.state_dict()
    assert torch.equal(tuned["body.conv1.weight"].cpu(), base_sd["conv1.weight"])            # frozen
    assert torch.equal(tuned["body.layer1.0.conv1.weight"].cpu(), base_sd["layer1.0.conv1.weight"])
    assert not torch.equal(tuned["body.layer3.0.conv1.weight"].cpu(), base_sd["layer3.0.conv1.weight"])
    assert torch.equal(tuned["body.layer2.0.bn1.running_mean"].cpu(), base_sd["layer2.0.bn1.running_mean"])


def test_save_and_load_give_identical_scores(trained, tmp_path):
    path = save_model(trained.model, tmp_path / "m.inspector")
    meta = read_metadata(path)
    assert meta["method"] == "apc"
    names = [n for n in meta["entries"] if n.startswith("arrays/encoder.")]
    assert "arrays/encoder.layer3.1.conv2.weight.npy" in names
    assert not any("layer4" in n or ".fc." in n for n in names)
    assert "arrays/bank.npy" not in meta["entries"]          # the bank lives in the index only
    assert meta["state"]["apc"]["n_anomalous"] == 3
    loaded = load_model(path)
    assert isinstance(loaded, APCModel)
    assert_same_predictions(trained.model, loaded)
    # the loaded encoder is the fine-tuned one, not the original backbone
    base, _ = load_backbone_module("resnet18", random_weights=True, seed=0)
    assert not torch.equal(loaded.extractor.state_dict()["body.layer3.0.conv1.weight"].cpu(),
                           base.state_dict()["layer3.0.conv1.weight"])


def test_files_that_kept_the_bank_as_an_array_still_load(trained, tmp_path, monkeypatch):
    from inspector.core.methods.patchcore import PatchCoreModel
    new_state = PatchCoreModel.state

    def old_state(self):            # the format before the bank lived only in the index
        meta, arrays, blobs = new_state(self)
        return meta, dict(arrays, bank=self.bank), blobs
    monkeypatch.setattr(PatchCoreModel, "state", old_state)
    path = save_model(trained.model, tmp_path / "old.inspector")
    assert "arrays/bank.npy" in read_metadata(path)["entries"]
    monkeypatch.undo()
    assert_same_predictions(trained.model, load_model(path))


def test_model_file_without_encoder_weights_is_refused(trained, tmp_path, monkeypatch):
    import inspector.core.methods.apc as apc_mod

    monkeypatch.setattr(apc_mod, "encoder_arrays", lambda ext: {})
    path = save_model(trained.model, tmp_path / "m.inspector")
    with pytest.raises(ModelFileError, match="encoder"):
        load_model(path)


def test_evaluate_with_labelled_anomalies(mvtec_category):
    settings = TrainSettings(method="apc", backbone="resnet18", random_weights=True, resize=64,
                             options=dict(FAST_OPTIONS, epochs=1))
    row = evaluate_category(load_mvtec_category(mvtec_category), settings, labelled_anomalies=2)
    assert row.n_test == 6 and 0.0 <= row.image_auroc <= 1.0


# -- errors, options, cancellation --------------------------------------------------------------

def test_registered():
    assert "apc" in method_names() and get_method("apc").model_class is APCModel


def test_missing_anomalies_say_how_to_provide_them(good_dir):
    with pytest.raises(InspectorError) as exc:
        train_model(list_images(good_dir), fast_settings([]))
    msg = str(exc.value)
    assert msg.startswith("APC needs labelled anomalous images") and "--anomalies" in msg


def test_unreadable_anomalies_give_a_clear_error(good_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InspectorError, match="labelled anomalous images could be read"):
        train_model(list_images(good_dir), fast_settings([(bad, None)]))


def test_options_pass_through_and_validate():
    opts = APCOptions.from_dict({"coreset_ratio": 0.2, "index": "exact", "epochs": 3, "batch_size": 4})
    assert opts.patchcore.coreset_ratio == 0.2 and opts.patchcore.index == "exact"
    assert opts.epochs == 3 and opts.patchcore.batch_size == 4
    assert APCOptions().w_cls == 10.0 and APCOptions().w_seg == 1.0 and APCOptions().w_rec == 1.0
    assert APCOptions.from_dict(opts.to_dict()).to_dict() == opts.to_dict()
    for bad in ({"nonsense": 1}, {"skips": 3}, {"seg_loss": "l1"}, {"anomalous_fraction": 0.0},
                {"coreset_ratio": 2.0}, {"batch_size": 1}):
        with pytest.raises(InspectorError):
            APCOptions.from_dict(bad)


def test_cancel_during_fine_tuning(good_dir, anomalies):
    token = CancelToken()
    stages = []

    def progress(stage, done, total):
        stages.append(stage)
        if stage.startswith("fine-tuning"):
            token.cancel()

    with pytest.raises(Cancelled):
        train_model(list_images(good_dir), fast_settings(anomalies), Job(progress, token))
    assert "extracting features" not in stages


def test_cancel_reaches_into_a_batch():
    """The network checks between stages, forward and backward: a long batch stops early."""
    net = _net("resnet18").train()
    x = torch.randn(2, 3, 64, 64)
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 8:           # forward makes 6 checks; the 3rd backward check cancels
            raise Cancelled("cancelled by the user")

    net.check = check
    out = net(x)
    loss = out.cls.sum() + out.seg.mean() + out.rec.mean()
    with pytest.raises(Cancelled):
        loss.backward()


def test_anomalies_from_folder_list_and_masks(tmp_path, anomalies):
    from inspector.core.errors import DatasetError
    from inspector.core.methods.apc import anomalies_from

    folder = anomalies[0][0].parent
    masks = tmp_path / "masks"
    masks.mkdir()
    for img, m in anomalies:
        if m is not None:
            (masks / m.name).write_bytes(m.read_bytes())
    # a folder: every image, masks matched by name (<stem>_mask.png)
    got = anomalies_from(_images_only(folder, tmp_path), masks)
    assert [(i.name, m.name if m else None) for i, m in got] == [
        ("000.png", "000_mask.png"), ("001.png", "001_mask.png"), ("002.png", None)]
    # a list file: image [TAB mask], relative to the list's folder, comments ignored
    lst = tmp_path / "labelled.txt"
    lst.write_text("# defects\nbad/000.png\tbad/000_mask.png\n\nbad/002.png\n")
    got = anomalies_from(lst)
    assert got == [(tmp_path / "bad" / "000.png", tmp_path / "bad" / "000_mask.png"), (tmp_path / "bad" / "002.png", None)]
    lst.write_text("bad/nope.png\n")
    with pytest.raises(DatasetError, match="line 1"):
        anomalies_from(lst)
    with pytest.raises(DatasetError, match="not found"):
        anomalies_from(tmp_path / "missing")


def _images_only(folder, tmp_path):
    out = tmp_path / "only_images"
    out.mkdir()
    for p in folder.iterdir():
        if not p.stem.endswith("_mask"):
            (out / p.name).write_bytes(p.read_bytes())
    return out
