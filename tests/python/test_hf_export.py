"""Hugging Face transformers models (tiny configs, random weights) exported by torch.onnx.export
(the TorchScript exporter at opset 17, and torch's default: dynamo, opset 20, external data),
against ONNX Runtime and PyTorch. Their exports use GatherElements / GatherND (positions,
pooling), CumSum (RoBERTa's position ids), Trilu and IsNaN (masks), Where, Expand and more."""
import numpy as np
import pytest

from conftest import assert_close, compare_with_ort

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


class LastHidden(torch.nn.Module):
    """The model called with named inputs, returning its last hidden state."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args))).last_hidden_state


def models():
    t = transformers
    return {
        "bert": lambda: t.BertModel(t.BertConfig(**SMALL)),
        "distilbert": lambda: t.DistilBertModel(
            t.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128)),
        "gpt2": lambda: t.GPT2Model(t.GPT2Config(n_embd=64, n_layer=2, n_head=4)),
        "roberta": lambda: t.RobertaModel(t.RobertaConfig(**SMALL)),
    }


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "default"])
@pytest.mark.parametrize("name", ["bert", "distilbert", "gpt2", "roberta"])
def test_hf_encoder_export(name, dynamo, tmp_path):
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    ids = torch.randint(3, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 10:] = 0
    inputs = {"input_ids": ids} if name == "gpt2" else {"input_ids": ids, "attention_mask": mask}
    model = LastHidden(models()[name]().eval(), list(inputs)).eval()
    path = tmp_path / "model.onnx"
    kw = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 17}
    torch.onnx.export(model, tuple(inputs.values()), str(path), input_names=list(inputs),
                      output_names=["output"], **kw)
    ours, _ = compare_with_ort(path, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        want = model(*inputs.values()).numpy()
    assert np.isfinite(want).all()
    assert_close(ours["output"], want, what=f"{name} vs PyTorch")
