// BERT encoder as torch.onnx.export writes it: embeddings + LayerNorm, self-attention built from
// MatMul / Reshape / Transpose / Softmax with an additive attention mask, erf-GELU feed-forward,
// a tanh pooler. The reshape targets are computed from Shape(input_ids) like torch's exporter
// does, so the model also exercises shape folding.
#include <cmath>

#include "zoo/builder.h"

namespace tessera::zoo {
namespace {

constexpr int kF = onnx::TensorProto::FLOAT;
constexpr int kI64 = onnx::TensorProto::INT64;
constexpr float kInit = 0.0346f;  // U(-a, a) with std 0.02, BERT's initializer range

struct Bert {
  GraphBuilder& b;
  const BertShape& s;

  std::string Linear(const std::string& x, int64_t in, int64_t out, const std::string& name) {
    std::string w = b.Weight(name + ".weight", {in, out}, -kInit, kInit);
    std::string bias = b.Weight(name + ".bias", {out}, -0.02f, 0.02f);
    return b.Op("Add", {b.Op("MatMul", {x, w}, {}, name + ".matmul"), bias}, {}, name + ".add");
  }
  std::string LayerNorm(const std::string& x, const std::string& name) {
    std::string g = b.Weight(name + ".weight", {s.hidden}, 0.9f, 1.1f);
    std::string be = b.Weight(name + ".bias", {s.hidden}, -0.02f, 0.02f);
    return b.Op("LayerNormalization", {x, g, be}, {A("axis", -1), Af("epsilon", 1e-12f)}, name);
  }
  std::string Gelu(const std::string& x) {
    std::string d = b.Op("Div", {x, b.ConstFloat(b.Unique("sqrt2"), 1.4142135381698608f)});
    std::string e = b.Op("Add", {b.Op("Erf", {d}), b.ConstFloat(b.Unique("one"), 1.0f)});
    return b.Op("Mul", {b.Op("Mul", {x, e}), b.ConstFloat(b.Unique("half"), 0.5f)});
  }
};

}  // namespace

onnx::ModelProto BuildBert(const std::string& name, const BertShape& s, uint64_t seed) {
  GraphBuilder b(name, seed);
  Bert m{b, s};
  const int64_t dh = s.hidden / s.heads;
  std::string ids = b.Input("input_ids", kI64, {1, s.seq});
  std::string mask = b.Input("attention_mask", kI64, {1, s.seq});

  // Reshape targets from the runtime batch size: [batch, seq, heads, dh] and [batch, seq, hidden].
  std::string shape = b.Op("Shape", {ids});
  std::string batch = b.Op("Gather", {shape, b.ConstInts("idx0", {0}, {})}, {A("axis", 0)});
  std::string batch1 = b.Op("Unsqueeze", {batch, b.ConstInts("axes0", {0})});
  std::string split_shape =
      b.Op("Concat", {batch1, b.ConstInts("seq_heads_dh", {s.seq, s.heads, dh})}, {A("axis", 0)});
  std::string merge_shape =
      b.Op("Concat", {batch1, b.ConstInts("seq_hidden", {s.seq, s.hidden})}, {A("axis", 0)});

  // Embeddings.
  std::string word =
      b.Weight("embeddings.word_embeddings.weight", {s.vocab, s.hidden}, -kInit, kInit);
  std::string pos =
      b.Weight("embeddings.position_embeddings.weight", {512, s.hidden}, -kInit, kInit);
  std::string typ =
      b.Weight("embeddings.token_type_embeddings.weight", {2, s.hidden}, -kInit, kInit);
  std::vector<int64_t> positions(s.seq);
  for (int i = 0; i < s.seq; ++i) positions[i] = i;
  std::string pos_ids = b.ConstInts("position_ids", positions, {1, s.seq});
  std::string type_ids = b.ConstInts("token_type_ids", std::vector<int64_t>(s.seq, 0), {1, s.seq});
  std::string x = b.Op("Add", {b.Op("Gather", {word, ids}), b.Op("Gather", {typ, type_ids})});
  x = b.Op("Add", {x, b.Op("Gather", {pos, pos_ids})});
  x = m.LayerNorm(x, "embeddings.LayerNorm");

  // Additive mask: (1 - mask) * -10000, shaped [batch, 1, 1, seq].
  std::string fmask = b.Op("Cast", {mask}, {A("to", static_cast<int64_t>(kF))});
  std::string inv = b.Op("Sub", {b.ConstFloat("one_f", 1.0f), fmask});
  std::string add_mask = b.Op("Mul", {inv, b.ConstFloat("mask_neg", -10000.0f)});
  add_mask = b.Op("Unsqueeze", {add_mask, b.ConstInts("axes12", {1, 2})});
  std::string scale = b.ConstFloat("attn_scale", std::sqrt(static_cast<float>(dh)));

  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l);
    auto heads = [&](const std::string& t, std::vector<int64_t> perm) {
      return b.Op("Transpose", {b.Op("Reshape", {t, split_shape})}, {A("perm", perm)});
    };
    std::string q =
        heads(m.Linear(x, s.hidden, s.hidden, p + ".attention.self.query"), {0, 2, 1, 3});
    std::string k = heads(m.Linear(x, s.hidden, s.hidden, p + ".attention.self.key"), {0, 2, 3, 1});
    std::string v =
        heads(m.Linear(x, s.hidden, s.hidden, p + ".attention.self.value"), {0, 2, 1, 3});
    std::string scores = b.Op("Div", {b.Op("MatMul", {q, k}), scale});
    scores = b.Op("Add", {scores, add_mask});
    std::string probs = b.Op("Softmax", {scores}, {A("axis", -1)});
    std::string ctx = b.Op("Transpose", {b.Op("MatMul", {probs, v})}, {A("perm", {0, 2, 1, 3})});
    ctx = b.Op("Reshape", {ctx, merge_shape});
    std::string attn = m.Linear(ctx, s.hidden, s.hidden, p + ".attention.output.dense");
    x = m.LayerNorm(b.Op("Add", {attn, x}), p + ".attention.output.LayerNorm");
    std::string h = m.Gelu(m.Linear(x, s.hidden, s.ffn, p + ".intermediate.dense"));
    h = m.Linear(h, s.ffn, s.hidden, p + ".output.dense");
    x = m.LayerNorm(b.Op("Add", {h, x}), p + ".output.LayerNorm");
  }
  std::string last = b.Op("Identity", {x}, {}, "last_hidden_state");
  std::string first = b.Op("Gather", {x, b.ConstInts("cls_index", {0}, {})}, {A("axis", 1)});
  std::string pooled =
      b.Op("Tanh", {m.Linear(first, s.hidden, s.hidden, "pooler.dense")}, {}, "pooler_output");
  b.Output(last, kF, {1, s.seq, s.hidden});
  b.Output(pooled, kF, {1, s.hidden});
  return b.Finish();
}

}  // namespace tessera::zoo
