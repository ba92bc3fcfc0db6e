"""Models exported by torch.onnx.export (random weights) against ONNX Runtime and PyTorch:
torchvision CNNs (ResNet, MobileNetV2/V3, VGG, SqueezeNet, DenseNet, EfficientNet), a ViT and
a transformer encoder. Uses the TorchScript exporter at opset 17, which emits the
Shape/Gather/Unsqueeze/Concat shape subgraphs Tessera folds at load."""
import numpy as np
import pytest

from conftest import assert_close, compare_with_ort

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def export(model, args, path, input_names, dynamic=True, opset=17):
    model.eval()
    axes = {n: {0: "batch"} for n in input_names} if dynamic else None
    if axes is not None:
        axes["output"] = {0: "batch"}
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                      input_names=input_names, output_names=["output"], dynamic_axes=axes)


def check(model, args, input_names, tmp_path, dynamic=True):
    path = tmp_path / "model.onnx"
    export(model, args, path, input_names, dynamic)
    feeds = {n: a.numpy() for n, a in zip(input_names, args)}
    ours, _ = compare_with_ort(path, feeds)
    with torch.no_grad():
        ref = model(*args).numpy()
    assert_close(ours["output"], ref, what="vs PyTorch")


VISION = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "densenet121",
          "efficientnet_b0", "vgg11_bn", "resnext50_32x4d"]


@pytest.mark.parametrize("name", VISION)
def test_torchvision_cnn(name, tmp_path):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(2, 3, 224, 224)
    check(model, (x,), ["input"], tmp_path)


def test_vision_transformer(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=2,
                                                 num_heads=4, hidden_dim=128, mlp_dim=256,
                                                 num_classes=10)
    check(model, (torch.randn(2, 3, 224, 224),), ["input"], tmp_path)


class Encoder(torch.nn.Module):
    """A BERT/DistilBERT-style encoder: embeddings, nn.TransformerEncoder with GELU, a head."""

    def __init__(self, vocab=1000, d=128, heads=4, layers=2, seq=32):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(1, seq, d) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0,
                                                 activation="gelu", batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, 8)

    def forward(self, ids, mask):
        x = self.emb(ids) + self.pos[:, : ids.shape[1]]
        x = self.enc(x, src_key_padding_mask=mask == 0)
        return self.head(self.norm(x)[:, 0])


def encoder_case():
    """The encoder with random weights, token ids and a mask that pads the second row."""
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.int64)
    mask[1, 20:] = 0
    return Encoder(), ids, mask


def test_transformer_encoder(tmp_path):
    model, ids, mask = encoder_case()
    check(model, (ids, mask), ["input_ids", "attention_mask"], tmp_path)


def export_default(model, args, path, input_names):
    """torch.onnx.export as torch >= 2.9 does it by default: the dynamo exporter, opset 18, the
    weights as ONNX external data in a file beside the model."""
    pytest.importorskip("onnxscript")
    model.eval()
    torch.onnx.export(model, args, str(path), input_names=input_names, output_names=["output"],
                      dynamo=True, external_data=True)
    assert (path.parent / (path.name + ".data")).exists(), "no external data written"


# swin_t: shifted windows, whose attention masks the exporter writes with ScatterND; maxvit_t:
# attention written as Einsum.
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "swin_t", "maxvit_t"])
def test_default_exporter_with_external_data_cnn(name, tmp_path):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(2, 3, 224, 224)
    path = tmp_path / "model.onnx"
    export_default(model, (x,), path, ["input"])
    ours, _ = compare_with_ort(path, {"input": x.numpy()})
    with torch.no_grad():
        assert_close(ours["output"], model(x).numpy(), what="vs PyTorch")


def test_default_exporter_with_external_data_transformer(tmp_path):
    model, ids, mask = encoder_case()
    path = tmp_path / "model.onnx"
    export_default(model, (ids, mask), path, ["input_ids", "attention_mask"])
    ours, _ = compare_with_ort(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        assert_close(ours["output"], model(ids, mask).numpy(), what="vs PyTorch")
