"""The shared torchvision mobilenet_v2 weights → timm's mobilenetv2_100, for anomalib.

Usage: python convert_weights.py WEIGHTS.pth OUT.pth

The shared file's convolutions carry biases (batch norm folded in, every BatchNorm the identity);
timm's convolutions have none, so each bias moves into the following BatchNorm's bias.  The script
checks that timm's taps blocks.2 and blocks.4 equal torchvision's features.6 and features.13 on a
random input, and the classifier outputs too (both print 0.0)."""
import sys
import torch, torchvision, timm
W, OUT = sys.argv[1], sys.argv[2]
sd = torch.load(W, weights_only=True)
tv = torchvision.models.mobilenet_v2(); tv.load_state_dict(sd); tv.eval()
tm = timm.create_model("mobilenetv2_100", pretrained=False); tm.eval()
tsd = tm.state_dict()
# group torchvision params per module in order: conv (weight,bias) followed by bn (weight,bias,rm,rv,nbt)
tv_convs = [(n, m) for n, m in tv.named_modules() if isinstance(m, torch.nn.Conv2d)]
tv_bns = [(n, m) for n, m in tv.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
tm_convs = [(n, m) for n, m in tm.named_modules() if isinstance(m, torch.nn.Conv2d)]
tm_bns = [(n, m) for n, m in tm.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
print(len(tv_convs), len(tm_convs), len(tv_bns), len(tm_bns))
assert len(tv_convs) == len(tm_convs) == len(tv_bns) == len(tm_bns)
new = {}
for (cn, c), (bn_n, b), (tcn, tc), (tbn, tb) in zip(tv_convs, tv_bns, tm_convs, tm_bns):
    assert c.weight.shape == tc.weight.shape, (cn, tcn)
    bias = c.bias.detach() if c.bias is not None else torch.zeros(c.out_channels)
    scale = b.weight / torch.sqrt(b.running_var + b.eps)
    # BN(conv(x)+bias) = scale*(conv(x)+bias-rm)+beta  -> conv weight*scale, bn identity with bias
    new[tcn + ".weight"] = c.weight.detach() * scale.detach().view(-1, 1, 1, 1)
    new[tbn + ".weight"] = torch.ones_like(b.weight)
    new[tbn + ".bias"] = (scale * (bias - b.running_mean) + b.bias).detach()
    new[tbn + ".running_mean"] = torch.zeros_like(b.running_mean)
    new[tbn + ".running_var"] = torch.full_like(b.running_var, 1 - tb.eps)
    new[tbn + ".num_batches_tracked"] = torch.tensor(0)
new["classifier.weight"] = sd["classifier.1.weight"]; new["classifier.bias"] = sd["classifier.1.bias"]
missing = set(tsd) - set(new); extra = set(new) - set(tsd)
print("missing", missing, "extra", extra)
tm.load_state_dict(new, strict=True)
x = torch.randn(2, 3, 224, 224)
with torch.no_grad():
    a6 = tv.features[:7](x); a13 = tv.features[7:14](a6)
    f = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True, out_indices=(2, 3))
    f.load_state_dict({k: v for k, v in new.items() if k in f.state_dict()}, strict=True); f.eval()
    o = f(x)
    print(f.feature_info.module_name(), [t.shape for t in o])
    print((o[0] - a6).abs().max().item(), (o[1] - a13).abs().max().item(), a13.abs().max().item())
    print((tm(x) - tv(x)).abs().max().item())
torch.save(new, OUT)
