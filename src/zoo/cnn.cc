// ResNet-18/50, MobileNetV2 and VGG16 in torchvision's layout (eval mode: BatchNorm with running
// statistics, no Dropout), 224x224 RGB input, 1000 classes.
#include <cmath>

#include "zoo/builder.h"

namespace tessera::zoo {
namespace {

constexpr int kF = onnx::TensorProto::FLOAT;

struct Cnn {
  GraphBuilder& b;

  // Conv (Kaiming-uniform weights, no bias) + BatchNorm. `gamma_hi` small on a residual
  // branch's last BN keeps the sum's scale stable over depth, as zero-init residuals do.
  std::string ConvBn(const std::string& x, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                     int64_t groups = 1, float gamma_lo = 0.5f, float gamma_hi = 1.0f) {
    const std::string n = b.Unique("conv");
    const float bound = std::sqrt(6.0f / static_cast<float>(cin / groups * k * k));
    std::string w = b.Weight(n + ".weight", {cout, cin / groups, k, k}, -bound, bound);
    int64_t p = k / 2;
    std::string y = b.Op("Conv", {x, w},
                         {A("kernel_shape", {k, k}), A("strides", {stride, stride}),
                          A("pads", {p, p, p, p}), A("group", groups), A("dilations", {1, 1})},
                         n);
    std::string g = b.Weight(n + ".bn.weight", {cout}, gamma_lo, gamma_hi);
    std::string be = b.Weight(n + ".bn.bias", {cout}, -0.1f, 0.1f);
    std::string mu = b.Weight(n + ".bn.running_mean", {cout}, -0.1f, 0.1f);
    std::string var = b.Weight(n + ".bn.running_var", {cout}, 0.5f, 1.5f);
    return b.Op("BatchNormalization", {y, g, be, mu, var}, {Af("epsilon", 1e-5f)}, n + ".bn");
  }
  std::string Relu(const std::string& x) { return b.Op("Relu", {x}); }
  std::string Relu6(const std::string& x) {
    std::string lo = b.ConstFloat(b.Unique("relu6_min"), 0.0f);
    std::string hi = b.ConstFloat(b.Unique("relu6_max"), 6.0f);
    return b.Op("Clip", {x, lo, hi});
  }
  std::string Head(const std::string& x, int64_t c) {
    std::string p = b.Op("GlobalAveragePool", {x});
    std::string f = b.Op("Flatten", {p}, {A("axis", 1)});
    return Linear(f, c, 1000, "fc");
  }
  std::string Linear(const std::string& x, int64_t in, int64_t out, const std::string& name) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    std::string w = b.Weight(name + ".weight", {out, in}, -bound, bound);
    std::string bias = b.Weight(name + ".bias", {out}, -bound, bound);
    return b.Op("Gemm", {x, w, bias}, {A("transB", 1)}, name);
  }
};

}  // namespace

onnx::ModelProto BuildResNet(int depth, uint64_t seed) {
  GraphBuilder b(depth == 18 ? "resnet18" : "resnet50", seed);
  Cnn c{b};
  std::string x = b.Input("input", kF, {1, 3, 224, 224});
  x = c.Relu(c.ConvBn(x, 3, 64, 7, 2));
  x = b.Op("MaxPool", {x},
           {A("kernel_shape", {3, 3}), A("strides", {2, 2}), A("pads", {1, 1, 1, 1})});
  const bool bottleneck = depth == 50;
  const std::vector<int> blocks =
      bottleneck ? std::vector<int>{3, 4, 6, 3} : std::vector<int>{2, 2, 2, 2};
  const int expansion = bottleneck ? 4 : 1;
  int64_t cin = 64;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t width = 64 << stage;
    for (int i = 0; i < blocks[stage]; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      const int64_t cout = width * expansion;
      std::string y;
      if (bottleneck) {
        y = c.Relu(c.ConvBn(x, cin, width, 1, 1));
        y = c.Relu(c.ConvBn(y, width, width, 3, stride));
        y = c.ConvBn(y, width, cout, 1, 1, 1, 0.1f, 0.3f);
      } else {
        y = c.Relu(c.ConvBn(x, cin, width, 3, stride));
        y = c.ConvBn(y, width, cout, 3, 1, 1, 0.1f, 0.3f);
      }
      std::string sc = x;
      if (stride != 1 || cin != cout) sc = c.ConvBn(x, cin, cout, 1, stride);
      x = c.Relu(b.Op("Add", {y, sc}));
      cin = cout;
    }
  }
  std::string out = c.Head(x, cin);
  b.Output(out, kF, {1, 1000});
  return b.Finish();
}

onnx::ModelProto BuildMobileNetV2(uint64_t seed) {
  GraphBuilder b("mobilenet_v2", seed);
  Cnn c{b};
  std::string x = b.Input("input", kF, {1, 3, 224, 224});
  x = c.Relu6(c.ConvBn(x, 3, 32, 3, 2));
  struct Cfg {
    int t, c, n, s;
  };
  const Cfg cfg[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                     {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t cin = 32;
  for (const auto& s : cfg) {
    for (int i = 0; i < s.n; ++i) {
      const int64_t stride = i == 0 ? s.s : 1, hidden = cin * s.t;
      std::string y = x;
      if (s.t != 1) y = c.Relu6(c.ConvBn(y, cin, hidden, 1, 1));
      y = c.Relu6(c.ConvBn(y, hidden, hidden, 3, stride, hidden));
      y = c.ConvBn(y, hidden, s.c, 1, 1, 1, 0.1f, 0.3f);
      if (stride == 1 && cin == s.c) y = b.Op("Add", {x, y});
      x = y;
      cin = s.c;
    }
  }
  x = c.Relu6(c.ConvBn(x, cin, 1280, 1, 1));
  std::string out = c.Head(x, 1280);
  b.Output(out, kF, {1, 1000});
  return b.Finish();
}

onnx::ModelProto BuildVgg16(uint64_t seed) {
  GraphBuilder b("vgg16", seed);
  Cnn c{b};
  std::string x = b.Input("input", kF, {1, 3, 224, 224});
  const int cfg[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  int64_t cin = 3;
  for (int v : cfg) {
    if (v == 0) {
      x = b.Op("MaxPool", {x}, {A("kernel_shape", {2, 2}), A("strides", {2, 2})});
      continue;
    }
    const std::string n = b.Unique("conv");
    const float bound = std::sqrt(6.0f / static_cast<float>(cin * 9));
    std::string w = b.Weight(n + ".weight", {v, cin, 3, 3}, -bound, bound);
    std::string bias = b.Weight(n + ".bias", {v}, -0.05f, 0.05f);
    x = c.Relu(b.Op("Conv", {x, w, bias},
                    {A("kernel_shape", {3, 3}), A("pads", {1, 1, 1, 1}), A("strides", {1, 1})}, n));
    cin = v;
  }
  x = b.Op("Flatten", {x}, {A("axis", 1)});
  x = c.Relu(c.Linear(x, 512 * 7 * 7, 4096, "classifier.0"));
  x = c.Relu(c.Linear(x, 4096, 4096, "classifier.3"));
  std::string out = c.Linear(x, 4096, 1000, "classifier.6");
  b.Output(out, kF, {1, 1000});
  return b.Finish();
}

onnx::ModelProto BuildTinyMlp(uint64_t seed) {
  GraphBuilder b("tiny_mlp", seed);
  std::string x = b.Input("input", onnx::TensorProto::FLOAT, {1, 16});
  std::string h = b.Op("MatMul", {x, b.Weight("fc1.weight", {16, 64}, -0.25f, 0.25f)});
  h = b.Op("Relu", {b.Op("Add", {h, b.Weight("fc1.bias", {64}, -0.1f, 0.1f)})});
  std::string y = b.Op("MatMul", {h, b.Weight("fc2.weight", {64, 16}, -0.125f, 0.125f)});
  y = b.Op("Add", {y, b.Weight("fc2.bias", {16}, -0.1f, 0.1f)}, {}, "output");
  b.Output(y, onnx::TensorProto::FLOAT, {1, 16});
  return b.Finish();
}

}  // namespace tessera::zoo
